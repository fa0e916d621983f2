"""A disk that fills up under each command that writes a workdir: a checkpoint, a feature shard, a transcript
piece, the metrics file, a report. Each stops with one line naming the fault, the path, what is complete and
the command that continues; nothing is left half-written under a final name; the rerun, once there is room,
finishes (training resumes from the checkpoint the line names; labelling gives the records an unbroken run
gives). A tmpfs of a few MiB is the disk (root only); /dev/full is a disk that is always full."""

import json
import os

import pytest

from fault_helpers import fault_line, grow, run, step_of, tmpfs, train_flags
from lanser_jax.utils import faults, fileio

pytestmark = [pytest.mark.faults, pytest.mark.subprocess, pytest.mark.slow]

TRAIN = {"checkpoint_every_steps": 5, "data.test_split": ""}


def test_checkpoint_on_a_full_disk_names_the_last_complete_one_and_the_rerun_resumes(synth_dir):
  with tmpfs("3m") as disk:  # a checkpoint of the tiny model is ~1.6 MB: step 5 fits, step 10 does not
    workdir = os.path.join(disk, "run")
    args = [*train_flags(synth_dir, **TRAIN), f"--workdir={workdir}"]
    line = fault_line(run("lanser_jax.main", args), "lanser_jax.main")
    # The write that meets the full disk usually names its file (a TensorStore array under checkpoints/10...);
    # in some runs it is an OSError ENOSPC that names none, and the line names the workdir.
    assert "disk full at " + workdir in line, line
    complete = step_of(r"checkpoint (\d+) is complete", line)
    not_written = step_of(r"step (\d+) was not written", line)
    assert (complete, not_written) == (5, 10), line
    assert f"Free space on {disk}" in line and "rerun: python -m lanser_jax.main" in line, line
    assert sorted(n for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit()) == ["5"]
    grow(disk, "64m")
    rerun = run("lanser_jax.main", args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from {os.path.join(workdir, 'checkpoints', '5')}" in rerun.stderr
    assert json.load(open(os.path.join(workdir, "results.json")))["steps"] == 20


def test_verbose_shows_the_traceback(synth_dir):
  with tmpfs("3m") as disk:
    args = [*train_flags(synth_dir, **TRAIN), f"--workdir={os.path.join(disk, 'run')}", "--verbose"]
    result = run("lanser_jax.main", args)
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    # Which write meets the full disk first decides the exception: TensorStore's RESOURCE_EXHAUSTED for an
    # array, or Python's OSError ENOSPC for Orbax's metadata files. Either way the traceback names it.
    assert "RESOURCE_EXHAUSTED" in result.stderr or "[Errno 28] No space left on device" in result.stderr


def test_metrics_file_on_a_full_disk(synth_dir, tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  os.symlink("/dev/full", workdir / "metrics.jsonl")  # every write to it fails with ENOSPC
  line = fault_line(run("lanser_jax.main", [*train_flags(synth_dir, **TRAIN), f"--workdir={workdir}"]),
                    "lanser_jax.main")
  assert f"disk full at {workdir / 'metrics.jsonl'}" in line, line
  assert "no checkpoint is complete" in line or "is complete" in line, line


def test_report_on_a_full_disk_leaves_no_half_report_and_the_rerun_writes_it(synth_dir, tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  os.symlink("/dev/full", workdir / "results.json.tmp")  # the report's temporary name (fileio.atomic_write)
  args = [*train_flags(synth_dir, **TRAIN), f"--workdir={workdir}"]
  line = fault_line(run("lanser_jax.main", args), "lanser_jax.main")
  assert f"disk full at {workdir / 'results.json.tmp'}" in line and "checkpoint 20 is complete" in line, line
  assert not (workdir / "results.json").exists() and not os.path.lexists(workdir / "results.json.tmp")
  rerun = run("lanser_jax.main", args)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert json.load(open(workdir / "results.json"))["steps"] == 20


def _crema_d(root, actors=90):
  from builders import make_crema_d
  make_crema_d(root, actors=range(1001, 1001 + actors))
  return str(root)


LABEL = "lanser_jax/experiments/labeling/crema_d.py"


def test_feature_shard_on_a_full_disk_leaves_complete_pieces_only_and_the_rerun_matches(tmp_path):
  from stage_helpers import read_records
  corpus = _crema_d(tmp_path / "crema")
  unbroken = tmp_path / "unbroken"
  result = run("lanser_jax.stages.main", [f"--config={LABEL}", f"--workdir={unbroken}",
                                          f"--config.manifest.root={corpus}"])
  assert result.returncode == 0, result.stderr[-3000:]
  with tmpfs("1m") as disk:  # the features of 180 clips take ~1.9 MB
    workdir = os.path.join(disk, "w")
    args = [f"--config={LABEL}", f"--workdir={workdir}", f"--config.manifest.root={corpus}"]
    line = fault_line(run("lanser_jax.stages.main", args), "lanser_jax.stages.main")
    assert "disk full at " + os.path.join(workdir, "features") in line, line
    done = step_of(r"(\d+) of 4 pieces of the features stage are complete", line)
    failed = step_of(r"piece (\d+) was not written", line)
    names = os.listdir(os.path.join(workdir, "features"))
    assert not [n for n in names if n.endswith(".tmp")], names
    pieces_on_disk = {int(n.split("-")[1]) for n in names if n.endswith(".array_record")}
    assert failed not in pieces_on_disk and len(pieces_on_disk) == done, names
    grow(disk, "64m")
    rerun = run("lanser_jax.stages.main", args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for split in ("train", "validation", "test"):
      got, want = read_records(os.path.join(workdir, "features"), split), read_records(unbroken / "features", split)
      assert sorted(got) == sorted(want)
      for utt in want:
        assert (got[utt].log_mel == want[utt].log_mel).all() and got[utt].label == want[utt].label


def test_transcript_piece_on_a_full_disk(tmp_path):
  """The asr stage (a fake transcriber: no model here) on a disk with room for the manifest only."""
  from lanser_jax.stages import chain
  from stage_helpers import FakeTranscriber, FakeLabeler, make_bad_folder, small_config
  make_bad_folder(tmp_path / "audio")
  config = small_config(str(tmp_path / "audio"))
  with tmpfs("1m") as disk:
    workdir = os.path.join(disk, "w")
    chain.run_stages(config, workdir, "manifest", (0, 1))
    with open(os.path.join(disk, "filler"), "wb") as f:  # two pages of room: the stage's config.asr.json
      page = os.statvfs(disk).f_frsize                   # fits, the piece's two files do not
      f.write(b"\0" * (os.statvfs(disk).f_bavail * page - 2 * page))
    with pytest.raises(OSError) as raised:
      chain.run_stages(config, workdir, "asr", (0, 1), transcriber=FakeTranscriber(), labeler=FakeLabeler())
    line = faults.line(raised.value, "lanser-label", "lanser-label --stage=asr ...")
    print(f"fault line: {line}")
    assert line.startswith("lanser-label: disk full at " + os.path.join(workdir, "asr")), line
    assert "0 of 3 pieces of the asr stage are complete" in line and "piece 0 was not written" in line, line
    assert fileio.listdir(os.path.join(workdir, "asr")) == [], "a piece file or temporary file was left"
    os.remove(os.path.join(disk, "filler"))
    chain.run_stages(config, workdir, "asr", (0, 1), transcriber=FakeTranscriber(), labeler=FakeLabeler())
    assert len([n for n in os.listdir(os.path.join(workdir, "asr")) if n.startswith("summary-")]) == 3


def test_sweep_stops_at_the_first_cell_that_fills_the_disk(synth_dir, tmp_path):
  spec = tmp_path / "two_cells.py"
  fast = {"data.dir": synth_dir, "data.crop_frames": 64, "data.eval_hop_frames": 32, "num_train_steps": 20,
          "eval_every_steps": 20, "checkpoint_every_steps": 5, "log_every_steps": 5}
  spec.write_text(
      "def get_sweep(arg=None):\n"
      f"  fast = {fast!r}\n"
      "  cell = lambda name: {'name': name, 'axes': {'seed': name},\n"
      "      'config': 'lanser_jax/experiments/finetune_crema_d.py:runlocal,platform=cpu', 'overrides': fast}\n"
      "  return [cell('a'), cell('b')]\n")
  with tmpfs("3m") as disk:
    line = fault_line(run("lanser_jax.tools.sweep", [f"--sweep={spec}", f"--root={disk}", "--run"]),
                      "lanser_jax.tools.sweep")
    assert line.startswith("lanser_jax.tools.sweep: cell a stopped on a fault"), line
    assert "0 of 2 cells of the sweep are complete; cell a is not" in line, line
    assert not os.path.exists(os.path.join(disk, "b")), "the sweep went on to the next cell"
