"""LanSER in JAX: `lanser_jax.load(workdir)` restores a trained run for prediction (see inference.py)."""


def load(*args, **kwargs): from lanser_jax import inference; return inference.load(*args, **kwargs)  # lazy: no jax import
