"""What the fault tests share: running a command as a user would (a subprocess) and reading its last stderr
line, a small tmpfs mounted for a test (root only, skipped otherwise), and the tiny training flags."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile

import pytest

from helpers import REPO, tiny_flags

# The line every fault ends with (lanser_jax/utils/faults.py), and the exit status (cli.FAULT_STATUS).
FAULT_STATUS = 3
LIBRARY_TRACES = ("Traceback", "RESOURCE_EXHAUSTED: Error writing", "_SignalingThread", "Check failure stack")


def env(**extra) -> dict[str, str]:
  return {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def run(module: str, args: list[str], timeout: float = 600, **popen) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=popen.pop("env", env()),
                        capture_output=True, text=True, timeout=timeout, **popen)


def fault_line(result: subprocess.CompletedProcess, program: str) -> str:
  """The command's last stderr line, checked to be the one fault line: exit status 3, no traceback."""
  assert result.returncode == FAULT_STATUS, (result.returncode, result.stderr[-3000:])
  for trace in LIBRARY_TRACES:
    assert trace not in result.stderr.replace(faults_line(result.stderr), ""), result.stderr[-3000:]
  line = faults_line(result.stderr)
  print(f"fault line: {line}")  # shown by pytest -rA: the table of docs/reliability.md is made of these
  assert line.startswith(f"{program}: "), result.stderr[-3000:]
  assert line.endswith("(--verbose shows the traceback)") or "Start every process" in line, line
  return line


def faults_line(stderr: str) -> str:
  """The last stderr line, less what multiprocessing's resource tracker (another process) prints at exit
  after a Grain worker was killed: a warning about the shared memory the dead worker left."""
  lines = [l for l in stderr.rstrip().splitlines()
           if "resource_tracker" not in l and not l.startswith("  warnings.warn(")]
  return lines[-1] if lines else ""


def train_flags(data_dir: str, **overrides) -> list[str]:
  return tiny_flags(data_dir, **overrides)


@contextlib.contextmanager
def tmpfs(size: str, options: str = ""):
  """A tmpfs of `size` mounted on a fresh folder for the test, unmounted after; skips unless root."""
  if os.geteuid() != 0:
    pytest.skip("mounting a small tmpfs (a disk that fills up, a read-only disk) needs root")
  d = tempfile.mkdtemp(prefix="lanser_fault_")
  opts = f"size={size}" + (f",{options}" if options else "")
  try:
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", d], check=True, capture_output=True)
  except (subprocess.CalledProcessError, FileNotFoundError) as e:
    os.rmdir(d)
    pytest.skip(f"cannot mount a tmpfs here: {getattr(e, 'stderr', e)!r}")
  try:
    yield d
  finally:
    subprocess.run(["umount", "-l", d], check=False)
    os.rmdir(d)


def grow(mount: str, size: str):
  """More room on a test's tmpfs: the operator freed space."""
  subprocess.run(["mount", "-o", f"remount,size={size}", mount], check=True)


def step_of(pattern: str, text: str) -> int:
  m = re.search(pattern, text)
  assert m, (pattern, text)
  return int(m.group(1))
