"""Labelling that repeats and says where it ran: two runs of the offline stages into two workdirs write
identical bytes, and every labelling summary records its models, settings, library versions and machine
(lanser_jax/stages/provenance.py). The same with the real Whisper tiny.en is in tests/labelers/test_whisper.py."""

import json
import os

from lanser_jax.stages import pieces, provenance
from stage_helpers import make_bad_folder, run_all, small_config, tree_bytes


def test_two_runs_into_two_workdirs_write_identical_bytes(tmp_path):
  root = str(tmp_path / "corpus")
  make_bad_folder(root)
  first, second = str(tmp_path / "one"), str(tmp_path / "two")
  run_all(small_config(root), first)
  run_all(small_config(root), second)
  one, two = tree_bytes(first), tree_bytes(second)
  assert sorted(one) == sorted(two)
  # The run wrote what the chain writes (so the comparison covers it): transcripts, labels, shards, summaries.
  for expected in ("asr/transcripts-00000-of-00003.jsonl", "labels/labels-00001-of-00003.jsonl",
                   "features/train-00000-of-00003.array_record", "features/dataset.json",
                   "asr/summary.json", "labels/summary.json", "summary.json", "errors.jsonl"):
    assert expected in one, expected
  assert [p for p in one if one[p] != two[p]] == []


def test_every_labelling_summary_records_where_it_ran(tmp_path):
  root, workdir = str(tmp_path / "corpus"), str(tmp_path / "work")
  make_bad_folder(root)
  config = small_config(root)
  config.asr.update(model="tiny.en", compute_type="float32")
  config.labeler.update(kind="sentence_encoder", taxonomy="ekman7")
  summary = run_all(config, workdir)
  asr_piece = pieces.read_json(os.path.join(workdir, "asr", "summary-00001-of-00003.json"))
  where = asr_piece["provenance"]
  assert where["model"] == "tiny.en" and where["compute_type"] == "float32" and where["beam_size"] == 5
  assert where["transcriber"] == "FakeTranscriber" and where["packing"] == "on"
  assert set(where["libraries"]) == set(provenance.ASR_LIBRARIES) and where["libraries"]["numpy"]
  assert where["machine"]["cpu"] and where["machine"]["cpu_count"] == os.cpu_count()
  assert "retried_repetitive" not in asr_piece  # a transcriber without the guard reports no guard counts
  labels = pieces.read_json(os.path.join(workdir, "labels", "summary.json"))["provenance"]
  assert labels["kind"] == "sentence_encoder" and labels["model"] == "sentence-transformers/all-MiniLM-L6-v2"
  assert labels["taxonomy"] == "ekman7" and labels["labeler"] == "FakeLabeler"
  assert labels["jax_devices"] and labels["libraries"]["jax"]
  # The stage summary carries the pieces' one record; the end-to-end summary carries each stage's.
  assert pieces.read_json(os.path.join(workdir, "asr", "summary.json"))["provenance"] == where
  assert summary["provenance"] == {"asr": where, "label": labels}
  assert json.load(open(os.path.join(workdir, "summary.json")))["provenance"]["asr"] == where


def test_pieces_that_ran_in_different_places_keep_every_record():
  a, b = {"provenance": {"cpu": "A"}}, {"provenance": {"cpu": "B"}}
  assert provenance.merged([a, a]) == {"cpu": "A"}
  assert provenance.merged([a, b, a]) == [{"cpu": "A"}, {"cpu": "B"}]
  assert provenance.merged([{"in": 1}]) is None
