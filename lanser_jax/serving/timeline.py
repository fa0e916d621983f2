r"""The emotion timeline of a recording of any length: each speech segment (or fixed window) with its start,
end, label and probabilities, as CSV, JSON lines, SRT or WebVTT subtitles and a PNG of probabilities over time.

  lanser-timeline --workdir=workdirs/iemocap talk.mp4 --output=talk.csv,talk.srt,talk.vtt --png=talk.png \
      [--segments=vad|windows] [--window_seconds=3 --hop_seconds=1.5] [--threshold=0.5] \
      [--min_silence_ms=500] [--speech_pad_ms=200] [--max_segment_seconds=30] [--batch_size=32] [--step=best]
  (or python -m lanser_jax.serving.timeline ...; in Python: lanser_jax.load(workdir).timeline("talk.mp4"))

The recording is read twice as a stream, never whole: once at 16 kHz for the segments (lanser_jax/serving/vad.py:
Silero VAD, or windows), then segment by segment, each decoded from its offset for its duration as a manifest
row with offset/duration is, and classified by Classifier.forward_clips: the training's log-mel, evaluation
windows and averaging, so a segment gets the logits evaluation would give that stretch of audio. Rows are
written as they are classified; a segment that cannot be classified (e.g. silent in --segments=windows) is a
row with an error. --output names one or more files; each one's extension (.csv, .jsonl, .srt, .vtt) picks
its format; without it, CSV goes to stdout.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
from typing import Iterable, Iterator, Sequence

from absl import app, flags
import numpy as np

from lanser_jax.utils import cli, fileio

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".srt": "srt", ".vtt": "vtt"}

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_WORKDIR = flags.DEFINE_string("workdir", None, "The training workdir (or a checkpoint step folder).",
                               flag_values=FLAGS)
_STEP = flags.DEFINE_string("step", None, "best (default; else latest), latest, or a step number.",
                            flag_values=FLAGS)
_OUTPUT = flags.DEFINE_list("output", [], "Files to write: .csv, .jsonl, .srt, .vtt (default: CSV on stdout).",
                            flag_values=FLAGS)
_PNG = flags.DEFINE_string("png", None, "A PNG of the probabilities over time, segments shaded.",
                           flag_values=FLAGS)
_SEGMENTS = flags.DEFINE_enum("segments", "vad", ["vad", "windows"], "Speech segments (Silero VAD) or fixed "
                              "windows.", flag_values=FLAGS)
_WINDOW = flags.DEFINE_float("window_seconds", 3.0, "--segments=windows: window length.", flag_values=FLAGS)
_HOP = flags.DEFINE_float("hop_seconds", 1.5, "--segments=windows: hop between window starts.", flag_values=FLAGS)
_THRESHOLD = flags.DEFINE_float("threshold", 0.5, "VAD: speech probability that starts speech.", flag_values=FLAGS)
_MIN_SILENCE = flags.DEFINE_integer("min_silence_ms", 500, "VAD: silence that ends a segment.", flag_values=FLAGS)
_PAD = flags.DEFINE_integer("speech_pad_ms", 200, "VAD: padding on each side of a segment.", flag_values=FLAGS)
_MAX_SEGMENT = flags.DEFINE_float("max_segment_seconds", 30.0, "VAD: longer speech is split.", flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Windows per model call.", flag_values=FLAGS)
flags.mark_flags_as_required(["workdir"], flag_values=FLAGS)


@dataclasses.dataclass
class Segment:
  """One row of a timeline: seconds from the start, and the classification (or why there is none)."""
  start: float
  end: float
  label: str = ""
  probability: float = float("nan")
  probabilities: dict[str, float] = dataclasses.field(default_factory=dict)
  error: str = ""


def spans(clf, audio, sample_rate: int | None = None, segments: str = "vad", window_seconds: float = 3.0,
          hop_seconds: float = 1.5, vad_options=None) -> Iterator[tuple[float, float]]:
  """(start, end) seconds of the segments of a path (streamed) or waveform."""
  from lanser_jax.serving import stream, vad
  if isinstance(audio, (str, os.PathLike)):
    blocks = stream.audio_blocks(os.fspath(audio), vad.SAMPLE_RATE)
  else:
    x = clf.waveform(audio, sample_rate)
    if clf.sample_rate != vad.SAMPLE_RATE:
      import librosa
      x = librosa.resample(x, orig_sr=clf.sample_rate, target_sr=vad.SAMPLE_RATE, res_type="soxr_hq")
    blocks = [np.asarray(x, np.float32)]
  if segments == "windows":
    return vad.fixed_windows(blocks, window_seconds, hop_seconds)
  if segments != "vad":
    raise ValueError(f"segments={segments!r}: expected 'vad' or 'windows'")
  return vad.speech_segments(blocks, options=vad_options or vad.VadOptions())


def classify(clf, audio, span_iter: Iterable[tuple[float, float]], sample_rate: int | None = None,
             chunk: int = 32) -> Iterator[Segment]:
  """A Segment per span, in order; `chunk` segments at a time share the model's batches."""
  from lanser_jax.audio import decode
  from lanser_jax.serving import classifier
  path = os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else None
  wave = None if path else clf.waveform(audio, sample_rate)

  def read(s, e):
    if path:
      return clf.read_clip(path, s, e - s)
    part = wave[int(round(s * clf.sample_rate)):int(round(e * clf.sample_rate))]
    return classifier.Clip("<waveform>", clf.log_mel(part, clf.sample_rate), len(part) / clf.sample_rate)

  def run(batch):
    clips = []
    for s, e in batch:
      try:
        clips.append(read(s, e))
      except (decode.AudioError, ValueError) as err:
        clips.append(err)
    results = iter(clf.forward_each([c for c in clips if not isinstance(c, Exception)]))
    for (s, e), c in zip(batch, clips):
      if not isinstance(c, Exception):
        c = next(results)
      if isinstance(c, Exception):
        yield Segment(s, e, error=str(c))
      else:
        p = clf.predictions_from_logits(c[0][None])[0]
        yield Segment(s, e, p.label, p.probability, p.as_dict())

  batch = []
  for span in span_iter:
    batch.append(span)
    if len(batch) == chunk:
      yield from run(batch)
      batch = []
  if batch:
    yield from run(batch)


# ---------------------------------------------------------------------------------------------------
# Output formats.


def _clock(seconds: float, sep: str) -> str:
  ms = int(round(seconds * 1000))
  h, ms = divmod(ms, 3_600_000)
  m, ms = divmod(ms, 60_000)
  s, ms = divmod(ms, 1000)
  return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def cue_text(seg: Segment, top: int = 2) -> str:
  """What a subtitle shows: the label and its probability, then the runner-up."""
  if seg.error:
    return f"(not classified: {seg.error})"
  order = sorted(seg.probabilities.items(), key=lambda kv: -kv[1])[:top]
  return "  ".join(f"{n} {p:.2f}" for n, p in order)


class Writer:
  """Writes rows to one open text file as they come, in a format of FORMATS."""

  def __init__(self, fmt: str, out, label_names: Sequence[str]):
    self.fmt, self.out, self.label_names, self.count = fmt, out, list(label_names), 0
    if fmt == "csv":
      self._csv = csv.writer(out, lineterminator="\n")
      self._csv.writerow(["start", "end", "label", "probability", *[f"p_{n}" for n in label_names], "error"])
    elif fmt == "vtt":
      out.write("WEBVTT\n\n")

  def add(self, seg: Segment):
    self.count += 1
    if self.fmt == "csv":
      probs = [f"{seg.probabilities[n]:.6f}" for n in self.label_names] if not seg.error else [""] * len(
          self.label_names)
      self._csv.writerow([f"{seg.start:.3f}", f"{seg.end:.3f}", seg.label,
                          "" if seg.error else f"{seg.probability:.6f}", *probs, seg.error])
    elif self.fmt == "jsonl":
      d = {"start": round(seg.start, 3), "end": round(seg.end, 3)}
      if seg.error:
        d["error"] = seg.error
      else:
        d.update(label=seg.label, probability=round(seg.probability, 6),
                 probabilities={n: round(p, 6) for n, p in seg.probabilities.items()})
      self.out.write(json.dumps(d, ensure_ascii=False) + "\n")
    elif self.fmt == "srt":
      self.out.write(f"{self.count}\n{_clock(seg.start, ',')} --> {_clock(seg.end, ',')}\n{cue_text(seg)}\n\n")
    elif self.fmt == "vtt":
      self.out.write(f"{_clock(seg.start, '.')} --> {_clock(seg.end, '.')}\n{cue_text(seg)}\n\n")
    self.out.flush()


def format_of(path: str) -> str:
  ext = os.path.splitext(path)[1].lower()
  if ext not in FORMATS:
    raise app.UsageError(f"--output {path}: unknown extension {ext!r}; use one of {', '.join(FORMATS)}")
  return FORMATS[ext]


def plot(segments: Sequence[Segment], label_names: Sequence[str], path: str, title: str = ""):
  """A PNG: each class's probability per segment over time (steps over the segment), segments shaded."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  fig, ax = plt.subplots(figsize=(12, 3.5), dpi=100)
  good = [s for s in segments if not s.error]
  for s in segments:
    ax.axvspan(s.start, s.end, color="0.92" if not s.error else "#f6d5d5", lw=0)
  for name in label_names:
    xs, ys = [], []
    for s in good:
      xs += [s.start, s.end, np.nan]
      ys += [s.probabilities[name]] * 2 + [np.nan]
    ax.plot(xs, ys, label=name, lw=1.5)
  end = max((s.end for s in segments), default=1.0)
  ax.set_xlim(0, end)
  ax.set_ylim(0, 1)
  ax.set_xlabel("seconds" if end < 600 else f"seconds (total {end / 60:.1f} min)")
  ax.set_ylabel("probability")
  ax.set_title(title, fontsize=9)
  ax.legend(loc="upper right", fontsize=8, ncol=min(len(label_names), 6))
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, format="png")
  plt.close(fig)


# ---------------------------------------------------------------------------------------------------
# Command line.


def main(argv: Sequence[str]) -> int:
  """Writes the timeline of the one recording named after the flags."""
  if len(argv) != 2:
    raise app.UsageError("name one audio or video file after the flags")
  path = argv[1]
  formats = [(p, format_of(p)) for p in _OUTPUT.value]
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  from lanser_jax.serving import classifier, vad
  classifier.quiet_orbax()
  clf = classifier.load(_WORKDIR.value, _STEP.value, batch_size=_BATCH_SIZE.value)
  clf.require_audio_front_end()
  options = vad.VadOptions(threshold=_THRESHOLD.value, min_silence_ms=_MIN_SILENCE.value,
                           speech_pad_ms=_PAD.value, max_segment_s=_MAX_SEGMENT.value)
  how = (f"Silero VAD ({os.path.basename(vad.model_path())})" if _SEGMENTS.value == "vad"
         else f"windows of {_WINDOW.value:g} s every {_HOP.value:g} s")
  cli.log(f"model {clf.config.model.name} step {clf.step} from {clf.state_path}; {path}: segments by {how}")
  span_iter = spans(clf, path, segments=_SEGMENTS.value, window_seconds=_WINDOW.value, hop_seconds=_HOP.value,
                    vad_options=options)
  staged = fileio.StagedFiles("lanser_timeline_")
  writers = [Writer(fmt, staged.open(p, "w", encoding="utf-8"), clf.label_names) for p, fmt in formats]
  if not writers:
    writers = [Writer("csv", sys.stdout, clf.label_names)]
  rows = []
  for seg in classify(clf, path, span_iter):
    rows.append(seg)  # a few numbers per segment: kept for the PNG and the summary
    for w in writers:
      w.add(seg)
    if len(rows) % 50 == 0:
      cli.log(f"timeline: {len(rows)} segments, up to {seg.end:.0f} s")
  for w in writers:
    if w.out is not sys.stdout:
      w.out.close()
  staged.commit()
  if _PNG.value:
    plot(rows, clf.label_names, _PNG.value, title=f"{os.path.basename(path)}: {how}")
  failed = sum(1 for r in rows if r.error)
  speech = sum(r.end - r.start for r in rows)
  cli.log(f"{len(rows)} segments ({speech:.1f} s), {failed} not classified"
          + (f" -> {', '.join([p for p, _ in formats] + ([_PNG.value] if _PNG.value else []))}"
             if formats or _PNG.value else ""))
  return 0 if len(rows) > failed else 1


def run():
  """The `lanser-timeline` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
