"""The offline stages' structure: a new stage is one Stage subclass and one list entry, each option default is
written once, the old names still work with a message, and the shared helpers (progress, prefetch, staged
files, the media-extension list) behave as the stages rely on."""

import dataclasses
import io
import json
import logging
import os
import re

import numpy as np
import pytest
import soundfile

from lanser_jax.corpora import manifests
from lanser_jax.corpora import generic
from lanser_jax.audio import decode
from lanser_jax.audio import log_mel
from lanser_jax.utils import fileio, prefetch, progress
from lanser_jax.serving import predict
from lanser_jax.engine import writers
from lanser_jax.labelers import whisper
from lanser_jax.stages import chain, pieces, stage
from lanser_jax.stages import defaults
from stage_helpers import make_bad_folder, small_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------------------------------------------
# A new stage: one Stage subclass and one list entry.


class WordCountStage(stage.Stage):
  """Counts the characters of each utterance id: the smallest stage that reads the manifest."""
  name = "count"
  inputs = ("manifest",)

  def setup(self, config, workdir, log, **models):
    return pieces.Manifest(os.path.join(workdir, "manifest", "manifest.jsonl")), self.out_dir(config, workdir)

  def run_piece(self, state, piece, num_pieces):
    manifest, out_dir = state
    with pieces.PieceOutputs(out_dir, self.name, piece, num_pieces) as out:
      f, n = out.open_jsonl("counts"), 0
      for row in manifest.piece(piece, num_pieces):
        n += 1
        if row.utt_id.startswith("s"):  # silent, short: rejected with a reason
          out.error(row.utt_id, "starts with s: not counted")
        else:
          f.write(pieces.json_line({"utt_id": row.utt_id, "chars": len(row.utt_id)}))
      out.commit({"in": n, "written": n - out.num_errors})

  def finish(self, state):
    _, out_dir = state
    fileio.write_text(os.path.join(out_dir, "finished.txt"), "all pieces\n")


def test_a_new_stage_is_one_class_and_one_list_entry(tmp_path, monkeypatch):
  new = WordCountStage()
  monkeypatch.setattr(chain, "STAGES", chain.STAGES + (new,))
  monkeypatch.setattr(chain, "BY_NAME", {**chain.BY_NAME, new.name: new})
  make_bad_folder(str(tmp_path / "corpus"))
  c = small_config(str(tmp_path / "corpus"), shards=3)
  c.stages = ("manifest", "count")
  workdir = str(tmp_path / "w")
  summary = chain.run_stages(c, workdir, "all", (0, 1))
  out = os.path.join(workdir, "count")
  assert all(pieces.piece_done(out, j, 3) for j in range(3))
  assert open(os.path.join(out, "finished.txt")).read() == "all pieces\n"
  merged = json.load(open(os.path.join(out, "summary.json")))
  assert merged["in"] == 11 and merged["rejected"] == 2 and merged["written"] == 9  # silent, short
  assert summary["in"] == 11 and summary["written"] == 9 and summary["balanced"]
  with pytest.raises(ValueError, match=r"unknown stage\(s\) \['nope'\]"):
    chain.run_stages(c, workdir, "nope", (0, 1))


def test_every_stage_says_what_it_reads_and_where_it_writes():
  c = defaults.default_config()
  assert [s.name for s in chain.STAGES] == list(c.stages) == list(chain.NAMES)
  assert {s.name: s.folder(c) for s in chain.STAGES} == {
      "manifest": "manifest", "asr": "asr", "label": "labels", "features": c.features.dir_name}
  for s in chain.STAGES[1:]:
    assert s.inputs and all(i in chain.NAMES for i in s.inputs), s.name


# ---------------------------------------------------------------------------------------------------
# Each default written once.


def test_config_sections_are_made_from_the_typed_options():
  c = defaults.default_config()
  assert c.asr.to_dict() == dataclasses.asdict(whisper.AsrOptions())
  assert c.audio.to_dict() == dataclasses.asdict(decode.AudioOptions())
  mel = dataclasses.asdict(log_mel.LogMelOptions())
  assert "sample_rate" not in c.features  # the rate is audio.sample_rate
  for k, v in mel.items():
    assert k == "sample_rate" or c.features[k] == v, k
  c.audio.sample_rate = 8000
  options = log_mel.LogMelOptions.from_config(c.features, sample_rate=c.audio.sample_rate)
  assert options.sample_rate == 8000 and options.num_mel_bins == c.features.num_mel_bins
  from lanser_jax import labelers
  assert c.labeler.length_buckets == labelers.LENGTH_BUCKETS


# ---------------------------------------------------------------------------------------------------
# The shared helpers.


def test_map_ahead_keeps_order_and_hands_over_exceptions():
  def fn(x):
    if x == 3:
      raise ValueError("three")
    return x * 10
  for workers in (0, 1, 3):
    got = list(prefetch.map_ahead(fn, range(6), workers=workers, lookahead=2))
    assert [i for i, _ in got] == list(range(6))
    assert [r for _, r in got if not isinstance(r, Exception)] == [0, 10, 20, 40, 50]
    assert prefetch.describe_error(got[3][1]) == "ValueError: three"
    assert prefetch.describe_error(got[3][1], (ValueError,)) == "three"


def test_prefetch_runs_a_generator_ahead_and_reraises_its_error():
  assert list(prefetch.prefetch(iter(range(5)), depth=2)) == list(range(5))
  assert list(prefetch.prefetch([])) == []

  def broken():
    yield 1
    raise RuntimeError("tokeniser failed")
  with pytest.raises(RuntimeError, match="tokeniser failed"):
    list(prefetch.prefetch(broken()))
  it = prefetch.prefetch(iter(range(1000)), depth=2)
  assert next(it) == 0
  it.close()  # stopping early leaves no thread behind blocking the exit


def test_one_progress_reporter_for_items_and_training_steps(caplog):
  stream = io.StringIO()
  p = progress.Progress("predict", total=4, interval=0.0, stream=stream)
  p.update(2)
  p.close()
  lines = stream.getvalue().splitlines()
  assert re.search(r"\[predict\] 2/4 \(50.0%\) items, [\d.]+/s, elapsed 0:00:00, ETA \d+:\d\d:\d\d", lines[0])
  assert "ETA" not in lines[-1]
  stream = io.StringIO()  # the Ray runner's job line: its own unit, and the pieces per stage after it
  p = progress.Progress("ray", total=10, interval=0.0, stream=stream, unit="utterances",
                        detail=lambda: "pieces 1/2 (asr 2, label 1)")
  p.tick()  # nothing new: still a line once the interval has passed
  p.update(5)
  lines = stream.getvalue().splitlines()
  assert re.fullmatch(r"\[ray\] 0/10 \(0.0%\) utterances, 0.00/s, elapsed 0:00:00; pieces 1/2 \(asr 2, label 1\)",
                      lines[0]), lines
  assert re.fullmatch(r"\[ray\] 5/10 \(50.0%\) utterances, [\d.]+/s, elapsed 0:00:00, ETA \d+:\d\d:\d\d; "
                      r"pieces 1/2 \(asr 2, label 1\)", lines[1]), lines
  with caplog.at_level(logging.INFO):
    t = writers.Progress(total_steps=10, batch_size=4, first_step=0)
    t.start(1)
    t.exclude(0.0)
    out = t(2, {"train/loss": 0.5})
  assert isinstance(t, progress.Progress) and out["train/examples_per_sec"] > 0
  assert any(re.search(r"step 2/10  loss 0.5000  [\d.]+ examples/s  ETA \d+:\d\d:\d\d", r.getMessage())
             for r in caplog.records)


def test_staged_files_appear_together_or_not_at_all(tmp_path):
  a, b = str(tmp_path / "a.jsonl"), str(tmp_path / "sub" / "b.bin")
  staged = fileio.StagedFiles()
  with staged.open(a) as f:
    f.write("x\n")
  with staged.open(b, "wb", encoding=None) as f:
    f.write(b"\x00\x01")
  assert staged.path(a) == a + ".tmp" and not os.path.exists(a) and not os.path.exists(b)
  staged.commit()
  assert open(a).read() == "x\n" and open(b, "rb").read() == b"\x00\x01"
  assert sorted(os.listdir(tmp_path)) == ["a.jsonl", "sub"] and os.listdir(tmp_path / "sub") == ["b.bin"]
  gone = fileio.StagedFiles()
  with gone.open(str(tmp_path / "c.jsonl")) as f:
    f.write("y\n")
  gone.abort()
  assert sorted(os.listdir(tmp_path)) == ["a.jsonl", "sub"]


def test_one_media_extension_list(tmp_path):
  assert generic.AUDIO_EXTENSIONS == manifests.AUDIO_EXTENSIONS
  assert generic.VIDEO_EXTENSIONS == manifests.VIDEO_EXTENSIONS
  assert predict.AUDIO_EXTENSIONS == manifests.MEDIA_EXTENSIONS
  assert set(decode.NOT_SOUNDFILE_EXTENSIONS) == set(manifests.MEDIA_EXTENSIONS) - set(
      manifests.SOUNDFILE_EXTENSIONS)
  for name in ("a.wav", "b.aiff", "c.au"):
    soundfile.write(str(tmp_path / name), np.zeros(800, np.float32), 16000,
                    format={"wav": "WAV", "aiff": "AIFF", "au": "AU"}[name.split(".")[1]])
  rows = list(generic.folder_rows(str(tmp_path)))
  assert sorted(r.utt_id for r in rows) == ["a", "b", "c"]
  assert sorted(os.path.basename(p) for p in predict.expand_inputs([str(tmp_path)])) == ["a.wav", "b.aiff",
                                                                                         "c.au"]
