"""What the Ray runner's tests share: one real local Ray per test module (2 CPUs, as the machine has), and ASR
doubles that misbehave inside a Ray worker the way real ones do (a process killed mid-piece, a clip that breaks
the model on every attempt). The doubles are moved to the workers by Ray, so they live in a module the workers
import (tests/ is on their PYTHONPATH)."""

import os
import time

import numpy as np
import pytest

from stage_helpers import FakeTranscriber

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def ray_session():
  """A local Ray with 2 CPUs for the module's tests; the runner joins it (and leaves it running)."""
  ray = pytest.importorskip("ray", reason="the Ray runner's tests need Ray: pip install 'lanser-jax[ray]'")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH", "")) if p))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
      yield ray
    finally:
      ray.shutdown()


class KilledOnceTranscriber(FakeTranscriber):
  """The first call anywhere writes its process id to `marker` and then waits to be killed (the test sends
  SIGKILL); every later call, in the restarted worker, transcribes as FakeTranscriber does."""

  def __init__(self, marker: str):
    self.marker = marker

  def transcribe(self, waves):
    if not os.path.exists(self.marker):
      with open(self.marker + ".tmp", "w") as f:
        f.write(str(os.getpid()))
      os.rename(self.marker + ".tmp", self.marker)
      time.sleep(300)  # killed long before this ends
      raise AssertionError("this worker was to be killed")
    return super().transcribe(waves)


class BreaksOnClip(FakeTranscriber):
  """Raises on every batch holding a clip of peak `peak` (a clip that breaks the model, every attempt), after
  noting the attempt in `attempts_file`."""

  def __init__(self, peak: float, attempts_file: str):
    self.peak, self.attempts_file = peak, attempts_file

  def transcribe(self, waves):
    if any(abs(float(np.max(np.abs(w))) - self.peak) < 0.05 for w in waves):
      with open(self.attempts_file, "a") as f:
        f.write(f"{os.getpid()}\n")
      raise RuntimeError("the model breaks on this clip")
    return super().transcribe(waves)
