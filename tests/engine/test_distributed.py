import os
import subprocess
import sys

import pytest

from lanser_jax.engine import distributed

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_explicit_mode_names_what_is_missing(monkeypatch):
  for var in ("LANSER_COORDINATOR", "LANSER_NUM_PROCESSES", "LANSER_PROCESS_ID"):
    monkeypatch.delenv(var, raising=False)
  with pytest.raises(distributed.DistributedInitError, match="number of processes.*process id"):
    distributed.initialize("explicit", coordinator_address="127.0.0.1:1234")
  with pytest.raises(distributed.DistributedInitError, match=r"process id 2 is outside \[0, 2\)"):
    distributed.initialize("explicit", "127.0.0.1:1234", 2, 2)
  with pytest.raises(distributed.DistributedInitError, match="not one of"):
    distributed.initialize("slurm")


@pytest.mark.subprocess
def test_missing_peer_times_out_with_a_clear_error():
  """Process 1 of 2 waits for a coordinator that never comes: a bounded wait and a message saying so."""
  code = ("from lanser_jax.engine import distributed\n"
          "distributed.initialize('explicit', '127.0.0.1:1', 2, 1, timeout_s=2)\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu"))
  assert out.returncode != 0
  assert "DistributedInitError: JAX distributed runtime did not start within 2 s: coordinator 127.0.0.1:1 " \
         "does not answer" in out.stderr
