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
