"""The one line of lanser_jax/utils/faults.py from real errors raised by the kernel (/dev/full is a disk that is
always full), and the `--verbose` flag every command gets from cli.run. Fast: no command is started."""

import errno
import os

import pytest

from lanser_jax.engine import checkpointing
from lanser_jax.utils import cli, faults, fileio

pytestmark = [pytest.mark.faults]


def _full_disk_error(tmp_path):
  os.symlink("/dev/full", tmp_path / "out.json.tmp")
  with pytest.raises(OSError) as raised:
    fileio.write_text(str(tmp_path / "out.json"), "x" * 100)
  return raised.value


def test_full_disk_line_names_the_file_what_is_safe_and_the_command(tmp_path):
  e = _full_disk_error(tmp_path)
  assert e.errno == errno.ENOSPC
  faults.note_safe(e, "checkpoint 10 is complete; step 15 was not written")
  line = faults.line(e, "lanser-train", "lanser-train --config=c.py --workdir=w")
  assert line.startswith(f"lanser-train: disk full at {tmp_path / 'out.json.tmp'} (OSError: [Errno 28]"), line
  assert "; checkpoint 10 is complete; step 15 was not written. Free space on " in line, line
  assert line.endswith(", then rerun: lanser-train --config=c.py --workdir=w (--verbose shows the traceback)")
  assert "\n" not in line


def test_a_wrapped_fault_is_found_in_the_chain_and_other_errors_are_not_faults(tmp_path):
  try:
    try:
      raise _full_disk_error(tmp_path)
    except OSError as inner:
      raise RuntimeError("the save thread failed") from inner
  except RuntimeError as e:
    assert faults.storage_fault(e)[0] == "disk full"
  assert faults.line(ValueError("config.batch_size=7 is not divisible by 8 devices"), "p", "r") is None
  assert faults.line(KeyError("step 403"), "p", "r") is None  # a number is not an HTTP status


def test_storage_words_of_the_libraries():
  cases = {
      "RuntimeError: write() failed: No space left on device; writing /w/f/train-00001.array_record.tmp": "disk full",
      'ValueError: RESOURCE_EXHAUSTED: Error writing "x" in OCDBT database at local file "/w/checkpoints/10.orbax-'
      'checkpoint-tmp/state/": Failed writing': "disk full",
      "An error occurred (AccessDenied) when calling the PutObject operation: Access Denied": "access denied",
      "An error occurred (NoSuchBucket) when calling the ListObjectsV2 operation": "missing bucket",
      "OSError: [Errno 30] Read-only file system: '/mnt/ro/run'": "read-only storage",
  }
  for text, kind in cases.items():
    assert faults.storage_fault(RuntimeError(text))[0] == kind, text


def test_worker_death_names_the_signal_and_the_likely_cause():
  e = RuntimeError("Worker process was terminated unexpectedly with exit code -9. Search the logs above")
  what, todo = faults.describe(e)
  assert what == ("a Grain data worker process was killed by SIGKILL, as the kernel's out-of-memory killer ends a "
                  "process when host memory runs out (see `dmesg`)")
  assert "config.data.num_workers" in todo


def test_saved_note_lists_complete_steps_and_the_unfinished_one(tmp_path):
  root = tmp_path / "checkpoints"
  for name in ("5", "10", "15.orbax-checkpoint-tmp"):
    (root / name).mkdir(parents=True)
  assert checkpointing.saved_note(str(tmp_path)) == "checkpoint 10 is complete; step 15 was not written"
  assert checkpointing.saved_note(str(tmp_path / "nothing")) == "no checkpoint is complete"


def test_a_command_ends_on_a_fault_with_the_line_and_status_3_and_shows_the_traceback_with_verbose(capsys):
  def command(argv):
    raise OSError(errno.ENOSPC, "No space left on device", "/w/metrics.jsonl")

  with pytest.raises(SystemExit) as stopped:
    cli.guarded(command, lambda: False, "lanser_jax.main")(["lanser_jax.main"])
  assert stopped.value.code == cli.FAULT_STATUS
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("lanser_jax.main: disk full at /w/metrics.jsonl"), err
  with pytest.raises(OSError):  # --verbose: the line, then the exception goes on (absl prints its traceback)
    cli.guarded(command, lambda: True, "lanser_jax.main")(["lanser_jax.main"])
  with pytest.raises(ZeroDivisionError):  # not a fault: a bug keeps its traceback
    cli.guarded(lambda argv: 1 / 0, lambda: False, "lanser_jax.main")(["lanser_jax.main"])


_STRAGGLERS = '''
import asyncio, sys, threading, time
from absl import flags
from lanser_jax.utils import cli

class Straggler:
  def __del__(self):
    raise RuntimeError("Event loop is closed")

def late():
  time.sleep(1.0)  # the main thread has printed the line and is exiting by now
  raise RuntimeError("Event loop is closed")

def abandoned_callback(report):
  """What TensorStore does when a write finishes after Orbax closed the loop awaiting it: its C++ thread
  calls loop.call_soon_threadsafe and reports the error (PyErr_WriteUnraisable or PyErr_Print)."""
  loop = asyncio.new_event_loop()
  loop.close()
  try:
    loop.call_soon_threadsafe(print)
  except RuntimeError as e:
    report(e, e.__traceback__.tb_next)  # the frames from call_soon_threadsafe on, as C code sees them

def unraisable_args_type():
  hook, seen = sys.unraisablehook, []
  sys.unraisablehook = seen.append
  Straggler()  # dropped at once: its __del__'s error goes to the hook
  sys.unraisablehook = hook
  return type(seen[0])

def main(argv):
  args = unraisable_args_type()
  abandoned_callback(lambda e, tb: sys.unraisablehook(args((type(e), e, tb, None, None))))
  abandoned_callback(lambda e, tb: sys.excepthook(type(e), e, tb))
  threading.Thread(target=late).start()  # a library thread that fails while the interpreter waits for it
  globals()["straggler"] = Straggler()  # and an object whose finalizer fails while the interpreter ends
  raise OSError(28, "No space left on device", "/w/metrics.jsonl")

if __name__ == "__main__":
  cli.run(main, flags.FlagValues())
'''


@pytest.mark.subprocess
def test_the_line_is_the_last_thing_a_fault_prints_and_verbose_shows_the_rest(tmp_path):
  """TensorStore's reports of write results sent to Orbax's closed event loop (`RuntimeError: Event loop is
  closed`), and what threads and finalizers raise while the interpreter exits after the line, are dropped
  (cli.py: _drop_abandoned_callbacks, quiet_exit); with --verbose they are not."""
  import subprocess
  import sys
  from helpers import REPO
  script = tmp_path / "lanser-straggle"
  script.write_text(_STRAGGLERS)
  env = {**os.environ, "PYTHONPATH": REPO}
  quiet = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
  assert quiet.returncode == cli.FAULT_STATUS, quiet.stderr
  lines = quiet.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("lanser-straggle: disk full at /w/metrics.jsonl"), quiet.stderr
  verbose = subprocess.run([sys.executable, str(script), "--verbose"], capture_output=True, text=True, env=env,
                           timeout=120)
  assert verbose.returncode != 0
  assert verbose.stderr.count("RuntimeError: Event loop is closed") == 4, verbose.stderr  # 2 callbacks, thread, __del__
  assert "Traceback (most recent call last)" in verbose.stderr
