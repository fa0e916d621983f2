"""The training engine's parts: checkpoints, sharding, the distributed runtime, metrics and writers."""
