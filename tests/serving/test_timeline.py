"""The emotion timeline: Silero VAD finds the speech of real read speech placed between silences, fixed
windows tile a recording, each segment gets the logits of the evaluation path on the same audio, and the
CSV, JSON lines, SRT, WebVTT and PNG outputs are written by the command."""

import csv
import glob
import json
import os

import numpy as np
from absl import app
import pytest
import soundfile

from lanser_jax.audio import log_mel as log_mel_lib
from lanser_jax.serving import classifier, timeline, vad
from lanser_jax.utils import cli

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"


@pytest.fixture(scope="module")
def clf(served_run):
  return classifier.load(served_run["workdir"], batch_size=8)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
  """Five real read sentences (pocketsphinx-testdata), each after 2.5 s of faint noise."""
  files = sorted(glob.glob(os.path.join(LIBRIVOX, "*.wav")))
  if not files:
    pytest.skip(f"no LibriVox clips in {LIBRIVOX} (apt-get install pocketsphinx-testdata)")
  rng = np.random.default_rng(0)
  parts, spans, t = [], [], 0.0
  for f in files:
    x, sr = soundfile.read(f, dtype="float32")
    assert sr == 16000
    quiet = (3e-4 * rng.standard_normal(int(2.5 * sr))).astype(np.float32)
    parts += [quiet, x]
    spans.append((t + 2.5, t + 2.5 + len(x) / sr))
    t += 2.5 + len(x) / sr
  parts.append((3e-4 * rng.standard_normal(2 * 16000)).astype(np.float32))
  path = str(tmp_path_factory.mktemp("speech") / "speech.wav")
  soundfile.write(path, np.concatenate(parts), 16000, subtype="FLOAT")
  return path, spans


@pytest.mark.needs_model  # real read speech (LibriVox clips)
def test_vad_finds_the_sentences_and_nothing_between(speech_wav):
  path, sentences = speech_wav
  x = soundfile.read(path, dtype="float32")[0]
  options = vad.VadOptions(min_silence_ms=1000, speech_pad_ms=100)
  found = list(vad.speech_segments([x], options=options))
  blocks = [x[i:i + 7777] for i in range(0, len(x), 7777)]  # block boundaries change nothing
  np.testing.assert_allclose(list(vad.speech_segments(blocks, options=options)), found, atol=1e-6)
  assert len(found) == len(sentences)
  # Every sentence is covered by segments; no segment lies in a gap between sentences.
  for s, e in sentences:
    covered = sum(max(0.0, min(e, fe) - max(s, fs)) for fs, fe in found)
    assert covered > 0.8 * (e - s), (s, e, found)
  for fs, fe in found:
    assert any(fs < e + 0.3 and fe > s - 0.3 for s, e in sentences), (fs, fe, sentences)
  assert all(b[0] >= a[1] for a, b in zip(found, found[1:]))  # ordered, not overlapping


def test_fixed_windows_tile_the_recording():
  x = np.zeros(16000 * 10 + 8000, np.float32)
  got = list(vad.fixed_windows([x[:50000], x[50000:]], 3.0, 1.5))
  assert got == [(1.5 * k, 1.5 * k + 3.0) for k in range(6)]  # the last one ends at the end: no shorter tail
  assert list(vad.fixed_windows([x], 3.0, 3.0)) == [(0.0, 3.0), (3.0, 6.0), (6.0, 9.0), (9.0, 10.5)]


@pytest.mark.slow
@pytest.mark.needs_model
def test_segments_get_the_evaluation_logits(clf, speech_wav):
  path, _ = speech_wav
  segments = clf.timeline(path, segments="windows", window_seconds=2.0, hop_seconds=1.5)
  wave = soundfile.read(path, dtype="float32")[0]
  lm = log_mel_lib.LogMel(clf.log_mel_options)
  for seg in segments[::4]:
    part = wave[int(round(seg.start * 16000)):int(round(seg.end * 16000))]
    if np.max(np.abs(part)) < 1e-3:  # faint noise: refused as silent
      assert "silent" in seg.error
      continue
    want = clf.predict_log_mel(lm.one(part).astype(np.float16))  # the records' dtype, as evaluation reads it
    np.testing.assert_allclose([seg.probabilities[n] for n in clf.label_names], want.probabilities, atol=1e-5)
  # A waveform gives the same timeline as its file.
  again = clf.timeline(wave, 16000, segments="windows", window_seconds=2.0, hop_seconds=1.5)
  assert [(s.start, s.end, s.label) for s in again] == [(s.start, s.end, s.label) for s in segments]


@pytest.mark.slow
@pytest.mark.needs_model
def test_timeline_command_writes_every_format(served_run, speech_wav, tmp_path, capsys):
  path, sentences = speech_wav
  outs = [str(tmp_path / f"t.{ext}") for ext in ("csv", "jsonl", "srt", "vtt")]
  png = str(tmp_path / "t.png")
  assert cli.call(timeline, [f"--workdir={served_run['workdir']}", f"--output={','.join(outs)}",
                             f"--png={png}", "--min_silence_ms=1000", path]) == 0
  rows = list(csv.DictReader(open(outs[0])))
  assert len(rows) >= len(sentences) and all(r["label"] for r in rows)
  assert all(abs(sum(float(r[f"p_{n}"]) for n in ("low", "high", "noise", "sweep")) - 1) < 1e-4 for r in rows)
  jl = [json.loads(line) for line in open(outs[1])]
  assert [(j["start"], j["label"]) for j in jl] == [(float(r["start"]), r["label"]) for r in rows]
  srt = open(outs[2]).read().split("\n\n")
  assert srt[0].splitlines()[0] == "1" and " --> " in srt[0].splitlines()[1] and "," in srt[0].splitlines()[1]
  assert srt[0].splitlines()[2].startswith(rows[0]["label"])
  vtt = open(outs[3]).read()
  assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(rows)
  with open(png, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  err = capsys.readouterr().err
  assert "segments by Silero VAD" in err and f"{len(rows)} segments" in err
  with pytest.raises(app.UsageError, match=r"--output t.mp3: unknown extension '.mp3'"):
    cli.call(timeline, [f"--workdir={served_run['workdir']}", "--output=t.mp3", path])
