"""The labelling stages with a gs:// workdir on the GCS emulator: the same records and accounting as on a
local disk, resumption without loss or duplicates, and two processes sharing the bucket workdir."""

import os

import pytest
from array_record.python import array_record_module

from lanser_jax.input_pipeline import records
from lanser_jax.utils import fileio
from stage_helpers import make_bad_folder, run_all, small_config

pytestmark = pytest.mark.cloud


def snapshot(workdir):
  """Every piece's jsonl lines (order-free) and every feature record, for a local or bucket workdir."""
  out = {}
  for path in fileio.glob(os.path.join(workdir, "*", "*-of-*.jsonl")):
    out[os.path.relpath(path, workdir)] = sorted(fileio.read_text(path).splitlines())
  feature_dir = os.path.join(workdir, "features")
  for path in records.list_shards(feature_dir, "train"):
    reader = array_record_module.ArrayRecordReader(path)  # gs:// read by ArrayRecord's own GCS client
    for i in range(reader.num_records()):
      ex = records.decode(reader.read([i])[0])
      out[ex.utt_id] = (ex.label, ex.log_mel.tobytes(), None if ex.scores is None else ex.scores.tobytes())
    reader.close()
  return out


def _counts(summary):
  return {k: summary[k] for k in ("in", "written", "rejected", "balanced")}


def test_stages_on_a_bucket_match_local_resume_and_share(tmp_path, gcs_url):
  root = str(tmp_path / "corpus")
  make_bad_folder(root)
  local = str(tmp_path / "local")
  want = run_all(small_config(root), local)
  want_snap = snapshot(local)
  assert len([k for k in want_snap if "-of-" not in k]) == 4

  # Two processes share the bucket workdir: each does its pieces, process 0 finalises.
  work = fileio.join(gcs_url, "work")
  run_all(small_config(root), work, process=(0, 2))
  assert not fileio.exists(fileio.join(work, "features", "dataset.json"))  # piece 1 is process 1's
  run_all(small_config(root), work, process=(1, 2))
  got = run_all(small_config(root), work, process=(0, 2))
  assert _counts(got) == _counts(want) and got["balanced"]
  assert snapshot(work) == want_snap
  assert fileio.read_json(fileio.join(work, "features", "stats.json")) == \
      fileio.read_json(os.path.join(local, "features", "stats.json"))
  assert sorted(e["utt_id"] for e in fileio.read_jsonl(fileio.join(work, "errors.jsonl"))) == \
      sorted(e["utt_id"] for e in fileio.read_jsonl(os.path.join(local, "errors.jsonl")))
  assert not [p for p in fileio.walk_files(work) if p.endswith(".tmp")]

  # A job killed mid-piece leaves no summary for that piece (its objects are uploaded whole, the summary
  # last); the rerun redoes exactly those pieces.
  fileio.remove(fileio.join(work, "asr", "summary-00002-of-00003.json"))
  fileio.remove(fileio.join(work, "asr", "transcripts-00002-of-00003.jsonl"))
  fileio.remove(fileio.join(work, "features", "summary-00001-of-00003.json"))
  fileio.remove(fileio.join(work, "features", "train-00001-of-00003.array_record"))
  for name in ("summary.json", "dataset.json"):
    fileio.remove(fileio.join(work, "features", name))
  again = run_all(small_config(root), work)
  assert _counts(again) == _counts(want)
  assert snapshot(work) == want_snap
