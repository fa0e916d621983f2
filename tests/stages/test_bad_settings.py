"""Labelling settings that cannot work are refused before any work: another num_pieces in a started workdir,
num_pieces=0; and manifest rows without a split are counted and reported, not silently put in train."""

import glob
import json
import os

import pytest

from stage_helpers import FakeLabeler, FakeTranscriber, make_bad_folder, run_all, small_config
from lanser_jax import config_checks
from lanser_jax.stages import chain


def _listing(workdir):
  return sorted(os.path.relpath(p, workdir) for p in glob.glob(os.path.join(workdir, "**", "*"), recursive=True))


def test_rerun_with_another_num_pieces_is_refused_before_any_work(tmp_path):
  make_bad_folder(str(tmp_path / "corpus"))
  config = small_config(str(tmp_path / "corpus"), shards=3)
  config.stages = ("manifest", "asr")
  workdir = str(tmp_path / "w")
  chain.run_stages(config, workdir, "all", (0, 1), transcriber=FakeTranscriber())
  before = _listing(workdir)
  config.num_pieces = 4
  with pytest.raises(ValueError) as e:
    chain.run_stages(config, workdir, "all", (0, 1), transcriber=FakeTranscriber())
  message = str(e.value)
  assert message.startswith(f"config.num_pieces=4, but {os.path.join(workdir, 'asr')}/")
  assert "-of-00003." in message and "rerun with --config.num_pieces=3, or use a new workdir" in message
  assert _listing(workdir) == before  # nothing computed, nothing written


def test_zero_pieces_is_one_clear_line(tmp_path):
  make_bad_folder(str(tmp_path / "corpus"))
  config = small_config(str(tmp_path / "corpus"), shards=3)
  config.num_pieces = 0
  with pytest.raises(config_checks.ConfigError) as e:
    run_all(config, str(tmp_path / "w"))
  assert str(e.value).splitlines()[0] == "config.num_pieces=0: allowed an integer >= 1"


def test_rows_without_a_split_are_counted_and_reported(tmp_path, capsys):
  make_bad_folder(str(tmp_path / "corpus"))  # the folder adapter gives rows no split
  config = small_config(str(tmp_path / "corpus"), shards=2)
  workdir = str(tmp_path / "w")
  run_all(config, workdir)
  summary = json.load(open(os.path.join(workdir, "features", "summary.json")))
  manifest = [json.loads(line) for line in open(os.path.join(workdir, "manifest", "manifest.jsonl"))]
  assert all(row["split"] is None for row in manifest)
  # Every row the features stage read (those with a weak label) had no split.
  assert summary["no_split"] == summary["in"] == 4 and len(manifest) == 11
  out = capsys.readouterr()
  assert (f"[features] {summary['no_split']} manifest rows have no split and went to 'train'"
          in out.out + out.err)


def test_rows_placed_by_a_split_map_are_not_counted(tmp_path):
  make_bad_folder(str(tmp_path / "corpus"))
  config = small_config(str(tmp_path / "corpus"), shards=2)
  config.manifest.split = "train"  # the folder adapter's split for every row
  workdir = str(tmp_path / "w")
  chain.run_stages(config, workdir, "all", (0, 1), labeler=FakeLabeler(), transcriber=FakeTranscriber())
  assert json.load(open(os.path.join(workdir, "features", "summary.json")))["no_split"] == 0
