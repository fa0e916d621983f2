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

import pytest  # noqa: E402
from absl import flags  # noqa: E402

# Grain reads absl flags in its workers; under pytest nobody parses them, so take the defaults.
flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
  """A small generated feature folder with train/validation/test splits and soft scores."""
  from lanser_jax.input_pipeline import synthetic
  d = str(tmp_path_factory.mktemp("synth"))
  synthetic.write_synthetic(d, num_classes=4, mel_bins=32, num_train=96, num_eval=21, min_frames=20,
                            max_frames=160, num_shards=2, seed=0)
  return d


# GCS emulator and S3 server fixtures (gcs_server, s3_server, gcs_url, s3_url, bucket_url).
from storage_servers import bucket_url, gcs_server, gcs_url, s3_server, s3_url  # noqa: E402,F401
