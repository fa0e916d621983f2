"""A corrupt input shard (a truncated ArrayRecord file in the feature folder): training refuses to start, before
any step and without writing a checkpoint, and says in one line which file (the record reader's error of
issue #32, printed as one line because RecordError is a faults.one_line error)."""

import os
import shutil

import pytest

from fault_helpers import FAULT_STATUS, faults_line, run, train_flags

pytestmark = [pytest.mark.faults, pytest.mark.subprocess, pytest.mark.slow]


def test_truncated_shard_stops_training_before_the_first_step(synth_dir, tmp_path):
  data = tmp_path / "features"
  shutil.copytree(synth_dir, data)
  shard = data / "train-00001-of-00002.array_record"
  os.truncate(shard, os.path.getsize(shard) // 2)
  workdir = tmp_path / "run"
  result = run("lanser_jax.main", [*train_flags(str(data)), f"--workdir={workdir}"])
  assert result.returncode != 0
  assert "step 1/" not in result.stderr and "step 5/" not in result.stderr
  checkpoints = workdir / "checkpoints"
  assert not checkpoints.exists() or os.listdir(checkpoints) == []
  line = faults_line(result.stderr)
  assert result.returncode == FAULT_STATUS, result.stderr[-3000:]
  assert line.startswith(f"lanser_jax.main: {shard}: "), line
  assert "Traceback" not in result.stderr
