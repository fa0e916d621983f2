"""The emotion timeline: Silero VAD finds the speech of real read speech placed between silences and of the
two-speaker conversation pyannote-audio ships, fixed windows tile a recording, each segment gets the logits of
the evaluation path on the same audio, and the CSV, JSON lines, SRT, WebVTT and PNG outputs are written by the
command (the subtitles parsed back by a small SRT / WebVTT reader here)."""

import csv
import glob
import importlib.util
import json
import os
import re

import numpy as np
from absl import app
import pytest
import soundfile

from lanser_jax.audio import log_mel as log_mel_lib
from lanser_jax.serving import classifier, timeline, vad
from lanser_jax.utils import cli

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"
_CUE_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)([,.])(\d{3}) --> (\d\d):(\d\d):(\d\d)([,.])(\d{3})$")


def parse_subtitles(text: str, fmt: str) -> list[tuple[float, float, str]]:
  """(start, end, text) of each cue of an SRT or WebVTT file; fails on anything the format does not allow
  (a missing or out-of-order SRT counter, a malformed time line, the other format's decimal separator)."""
  blocks = text.split("\n\n")
  assert blocks[-1] == "", "the file ends with a blank line after the last cue"
  blocks = blocks[:-1]
  if fmt == "vtt":
    assert blocks[0] == "WEBVTT", blocks[0]
    blocks = blocks[1:]
  sep = "," if fmt == "srt" else "."
  cues = []
  for i, block in enumerate(blocks):
    lines = block.split("\n")
    if fmt == "srt":
      assert lines[0] == str(i + 1), (i, block)
      lines = lines[1:]
    m = _CUE_TIME.match(lines[0])
    assert m and m.group(4) == m.group(9) == sep, (fmt, lines[0])
    g = [int(x) if x.isdigit() else x for x in m.groups()]
    start = g[0] * 3600 + g[1] * 60 + g[2] + g[4] / 1000
    end = g[5] * 3600 + g[6] * 60 + g[7] + g[9] / 1000
    assert 0 <= start < end and len(lines) >= 2 and all(lines[1:]), block
    cues.append((start, end, "\n".join(lines[1:])))
  return cues


def pyannote_sample() -> str | None:
  """pyannote-audio's sample.wav (two speakers, 30 s): $LANSER_PYANNOTE_SAMPLE, or the installed package's."""
  path = os.environ.get("LANSER_PYANNOTE_SAMPLE")
  if not path:
    try:
      spec = importlib.util.find_spec("pyannote.audio")  # finds the package without importing its torch code
    except ImportError:
      spec = None
    if spec is None or not spec.submodule_search_locations:
      return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "sample", "sample.wav")
  return path if os.path.exists(path) else None


def merged_turns(rttm: str) -> list[tuple[float, float]]:
  """The reference speech of an RTTM file: its speaker turns, overlapping ones merged."""
  turns = sorted((float(f[3]), float(f[3]) + float(f[4])) for f in (line.split() for line in open(rttm))
                 if f and f[0] == "SPEAKER")
  merged = [list(turns[0])]
  for s, e in turns[1:]:
    if s <= merged[-1][1]:
      merged[-1][1] = max(merged[-1][1], e)
    else:
      merged.append([s, e])
  return [tuple(t) for t in merged]


def overlap(spans, s, e) -> float:
  return sum(max(0.0, min(e, fe) - max(s, fs)) for fs, fe in spans)


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
    assert overlap(found, s, e) > 0.8 * (e - s), (s, e, found)
  for fs, fe in found:
    assert any(fs < e + 0.3 and fe > s - 0.3 for s, e in sentences), (fs, fe, sentences)
  assert all(b[0] >= a[1] for a, b in zip(found, found[1:]))  # ordered, not overlapping


class ScriptedVad:
  """Speech probabilities 1 inside `spans` (seconds) and 0 elsewhere, per 512-sample chunk as they are read, as
  SileroVad.probabilities yields them."""

  def __init__(self, spans):
    self.spans = spans

  def probabilities(self, blocks):
    done = samples = 0
    for b in vad._with_tail(blocks):
      samples += len(b)
      t = np.arange(done, samples // vad.CHUNK) * vad.CHUNK / vad.SAMPLE_RATE
      done = samples // vad.CHUNK
      yield np.array([float(any(s <= x < e for s, e in self.spans)) for x in t], np.float32)


@pytest.mark.parametrize("options", [
    vad.VadOptions(speech_pad_ms=300, min_silence_ms=100, max_segment_s=1.0),  # padding longer than a pause
    vad.VadOptions(speech_pad_ms=200, min_silence_ms=500, max_segment_s=30.0)])
def test_segments_stay_inside_the_recording(options):
  """Speech up to the last sample, split and padded: no segment starts or ends outside the recording, and the
  segments are ordered, do not overlap and do not depend on the block size."""
  x = np.zeros(16000 * 10 - 100, np.float32)
  total = len(x) / 16000
  speech = [(0.0, 2.0), (2.4, 3.0), (8.7, 10.0)]
  found = list(vad.speech_segments([x], ScriptedVad(speech), options))
  again = list(vad.speech_segments([x[i:i + 3001] for i in range(0, len(x), 3001)], ScriptedVad(speech), options))
  assert found == again
  assert found and all(0 <= s < e <= total for s, e in found), found
  assert all(b[0] >= a[1] for a, b in zip(found, found[1:])), found
  assert found[-1][1] == total  # the last speech runs to the end
  for s, e in speech:
    assert overlap(found, s, min(e, total)) == pytest.approx(min(e, total) - s, abs=0.04), (s, e, found)


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
  for fmt, out in (("srt", outs[2]), ("vtt", outs[3])):  # each cue: the row's times, label and probability
    cues = parse_subtitles(open(out, encoding="utf-8").read(), fmt)
    assert len(cues) == len(rows), fmt
    for (start, end, text), r in zip(cues, rows):
      assert abs(start - float(r["start"])) <= 1e-3 and abs(end - float(r["end"])) <= 1e-3, (fmt, start, r)
      assert text.split()[:2] == [r["label"], f"{float(r['probability']):.2f}"], (fmt, text, r)
  with open(png, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  err = capsys.readouterr().err
  assert "segments by Silero VAD" in err and f"{len(rows)} segments" in err
  with pytest.raises(app.UsageError, match=r"--output t.mp3: unknown extension '.mp3'"):
    cli.call(timeline, [f"--workdir={served_run['workdir']}", "--output=t.mp3", path])


@pytest.mark.slow
@pytest.mark.needs_model  # pyannote-audio's sample.wav, real conversational speech
def test_timeline_of_the_pyannote_two_speaker_sample(request, tmp_path):
  sample = pyannote_sample()
  if sample is None:
    pytest.skip("no pyannote-audio sample.wav: pip install --no-deps pyannote-audio==4.0.7 (into this "
                "environment or a venv that chains it), or set LANSER_PYANNOTE_SAMPLE to its path")
  served_run = request.getfixturevalue("served_run")  # trained only when the sample is there
  duration = soundfile.info(sample).duration
  reference = merged_turns(os.path.splitext(sample)[0] + ".rttm")  # the sample's own speaker turns
  speech = sum(e - s for s, e in reference)
  # The defaults (the speakers' pauses are shorter than 500 ms: one long segment), then pauses of 100 ms.
  for name, flags in (("default", []), ("fine", ["--min_silence_ms=100", "--speech_pad_ms=100"])):
    outs = [str(tmp_path / f"{name}.{ext}") for ext in ("csv", "srt", "vtt")]
    assert cli.call(timeline, [f"--workdir={served_run['workdir']}", f"--output={','.join(outs)}", *flags,
                               sample]) == 0
    rows = list(csv.DictReader(open(outs[0])))
    segs = [(float(r["start"]), float(r["end"])) for r in rows]
    assert rows and all(r["label"] and not r["error"] for r in rows), rows
    assert all(0 <= s < e <= duration for s, e in segs), (name, segs, duration)  # inside the file
    assert all(b[0] >= a[1] for a, b in zip(segs, segs[1:])), (name, segs)  # ordered, not overlapping
    assert sum(overlap(segs, s, e) for s, e in reference) > 0.9 * speech, (name, segs, reference)
    for s, e in segs:  # each segment is speech, not the 6.7 s of silence before the first "Hello?"
      assert overlap(reference, s, e) > 0.8 * (e - s), (name, s, e, reference)
    for fmt, out in (("srt", outs[1]), ("vtt", outs[2])):
      cues = parse_subtitles(open(out, encoding="utf-8").read(), fmt)
      np.testing.assert_allclose([c[:2] for c in cues], segs, atol=1e-3)
  assert len(segs) >= 3, segs  # the fine segmentation follows the turns
