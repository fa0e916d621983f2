"""The launchers take jax from pyproject.toml's range: an accelerator only adds its plugin at that version."""

import glob
import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_no_launcher_pins_jax_itself():
  """A jax range written into a launcher drifts from the tested pins (it said <0.11 while CI tested 0.12)."""
  pinned = []
  for path in glob.glob(os.path.join(REPO, "launch", "*")):
    with open(path) as f:
      for n, line in enumerate(f, 1):
        unquoted = line.replace("'", "").replace('"', "")
        if re.search(r"jax(\[[a-z0-9-]+\])?\s*[<>=~]=?\s*\d", unquoted):
          pinned.append(f"{os.path.relpath(path, REPO)}:{n}: {line.strip()}")
  assert not pinned, "\n".join(pinned)
  for launcher, accelerator in (("tpu_pod.sh", "tpu"), ("slurm_gpu.sbatch", "cuda12")):
    with open(os.path.join(REPO, "launch", launcher)) as f:
      assert f"ACCELERATOR={accelerator} bash launch/setup_venv.sh" in f.read(), launcher


def test_setup_refuses_an_unknown_accelerator_before_installing_anything(tmp_path):
  venv = tmp_path / "venv"
  # An interpreter that does not exist: should the check ever move after the install, this fails at once.
  out = subprocess.run(["bash", os.path.join(REPO, "launch", "setup_venv.sh"), str(venv)],
                       env=dict(os.environ, ACCELERATOR="rocm", PYTHON=str(tmp_path / "no-python")),
                       capture_output=True, text=True)
  assert out.returncode == 2
  assert "ACCELERATOR=rocm: expected tpu, cuda12 or cuda13" in out.stderr
  assert not venv.exists()
