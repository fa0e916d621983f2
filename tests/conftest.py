"""Every test process sees 8 fake CPU devices, so sharded code paths run as on an 8-chip host."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests compile the same tiny steps many times, in this process and in subprocesses: share the compiled code.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", "build",
                                                                "jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# A size limit turns on JAX's file lock around cache reads and writes: test workers (pytest-xdist) and their
# subprocesses compile the same steps at the same time, and an unlocked entry can be read half-written.
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))

import numpy as np  # noqa: E402
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


# The synthetic experiment's runlocal form, sized for fast tests. A constant learning rate after one warmup
# step keeps num_train_steps out of the compiled step: a cosine schedule, and a warmup capped by the step
# count, bake the step count into the program, so each test's own step count would compile its own train
# step (~20 s each on 2 cores) instead of reusing the persistent cache. tests/test_train.py trains with the
# cosine schedule and the runlocal warmup.
TINY_OVERRIDES = {
    "data.crop_frames": 64, "data.eval_hop_frames": 32, "num_train_steps": 20, "eval_every_steps": 10,
    "checkpoint_every_steps": 10, "log_every_steps": 5, "optimizer.learning_rate": 3e-3,
    "optimizer.schedule": "constant", "optimizer.warmup_steps": 1,
    "specaugment.max_time_width": 10, "specaugment.max_freq_width": 4,
}
SYNTHETIC_RUNLOCAL = "experiments/synthetic.py:runlocal"


def write_audio_container(av, path, x, sr):
  """An MP4 file with one AAC audio stream (a stand-in for a movie clip's sound track)."""
  with av.open(path, "w") as c:
    stream = c.add_stream("aac", rate=sr, layout="mono")
    x = np.clip(x, -1, 1).astype(np.float32)
    for start in range(0, len(x), 1024):  # AAC frames hold 1024 samples
      frame = av.AudioFrame.from_ndarray(x[None, start:start + 1024], format="fltp", layout="mono")
      frame.sample_rate = sr
      for packet in stream.encode(frame):
        c.mux(packet)
    for packet in stream.encode(None):
      c.mux(packet)


def tiny_config(data_dir, **overrides):
  from lanser_jax import config_lib
  c = config_lib.load_experiment(os.path.join(os.path.dirname(__file__), "..", SYNTHETIC_RUNLOCAL))
  for key, value in {"data.dir": data_dir, **TINY_OVERRIDES, **overrides}.items():
    config_lib.set_override(c, key, value)
  return c


def tiny_flags(data_dir, **overrides):
  """The same configuration as `tiny_config`, as command-line flags of lanser_jax.main."""
  return [f"--config={SYNTHETIC_RUNLOCAL}",
          *[f"--config.{k}={v}" for k, v in {"data.dir": data_dir, **TINY_OVERRIDES, **overrides}.items()]]


# GCS emulator and S3 server fixtures (gcs_server, s3_server, gcs_url, s3_url, bucket_url).
from storage_servers import bucket_url, gcs_server, gcs_url, s3_server, s3_url  # noqa: E402,F401
