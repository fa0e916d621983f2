"""Test-session setup: the number of fake CPU devices (8 only when a selected test is marked multidevice), the
compile cache shared by tests and their subprocesses, and the session-wide fixtures.

Markers and tiers are described in pyproject.toml ([tool.pytest.ini_options]) and the README's "Tests" section.
"""

import os
import re

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

# Tests marked multidevice check sharding over a mesh of this many devices (an 8-chip host).
MULTIDEVICE_COUNT = 8
_DEVICE_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S*")


def _set_cpu_devices(count: int):
  """Sets the number of CPU devices of this process's JAX backend (not started yet) and of the Python
  subprocesses that tests start (they inherit XLA_FLAGS), keeping any other XLA flag already set."""
  others = _DEVICE_FLAG.sub("", os.environ.get("XLA_FLAGS", "")).split()
  if count > 1:
    others.append(f"--xla_force_host_platform_device_count={count}")
  os.environ["XLA_FLAGS"] = " ".join(others)


@pytest.hookimpl(trylast=True)  # after `-m` and `-k` have deselected what will not run
def pytest_collection_modifyitems(config, items):
  """8 fake devices if any selected test is marked multidevice, else JAX's default of 1 (as on a user's CPU).

  A mixed selection (plain `pytest tests`) runs every test on 8 devices; launch/test.sh runs the multidevice
  tests in a session of their own so that the others see one device. Set here, before any test starts JAX's
  backend, which reads XLA_FLAGS once per process."""
  multidevice = any(item.get_closest_marker("multidevice") for item in items)
  _set_cpu_devices(MULTIDEVICE_COUNT if multidevice else 1)


def pytest_runtest_setup(item):
  if item.get_closest_marker("multidevice"):
    import jax
    if jax.device_count() != MULTIDEVICE_COUNT:
      pytest.fail(f"{item.nodeid} is marked multidevice but this process has {jax.device_count()} JAX "
                  f"device(s), not {MULTIDEVICE_COUNT}: JAX was started before tests/conftest.py set the count "
                  "(a JAX call when a test module is imported?), or JAX_NUM_CPU_DEVICES overrides it",
                  pytrace=False)


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
