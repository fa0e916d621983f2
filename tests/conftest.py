"""Every test process sees 8 fake CPU devices, so sharded code paths run as on an 8-chip host."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests compile the same tiny steps many times, in this process and in subprocesses: share the compiled code.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", "build",
                                                                "jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402
from absl import flags  # noqa: E402

# Grain reads absl flags in its workers; under pytest nobody parses them, so take the defaults.
flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
  """A small generated feature folder with train/validation/test splits and soft scores."""
  from input_pipeline import synthetic
  d = str(tmp_path_factory.mktemp("synth"))
  synthetic.write_synthetic(d, num_classes=4, mel_bins=32, num_train=96, num_eval=21, min_frames=20,
                            max_frames=160, num_shards=2, seed=0)
  return d


def tiny_config(data_dir, **overrides):
  """The synthetic experiment in its runlocal form, with fast-test sizes."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "synthetic_experiment", os.path.join(os.path.dirname(__file__), "..", "experiments", "synthetic.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config("runlocal")
  c.data.dir = data_dir
  c.data.crop_frames = 64
  c.data.eval_hop_frames = 32
  c.num_train_steps = 20
  c.optimizer.learning_rate = 3e-3
  c.specaugment.max_time_width = 10
  c.specaugment.max_freq_width = 4
  c.eval_every_steps = 10
  c.checkpoint_every_steps = 10
  c.log_every_steps = 5
  for key, value in overrides.items():
    target = c
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c
