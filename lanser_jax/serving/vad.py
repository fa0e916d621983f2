"""Speech segments of a recording of any length, found as it streams by: the Silero VAD that faster-whisper
ships (an ONNX file run with onnxruntime), or fixed windows with a hop.

Silero gives a speech probability per 512 samples (32 ms at 16 kHz); its recurrent state and 64 samples of
context are carried from one block to the next, so a block boundary changes nothing. `speech_segments` turns
the probabilities into segments with hysteresis (speech starts at `threshold`, ends after `min_silence_ms`
below `threshold - 0.15`), drops segments shorter than `min_speech_ms`, pads each by `speech_pad_ms` and
splits one longer than `max_segment_s`, as faster-whisper's VadOptions describe their meaning. Both
segmenters take blocks of samples and yield (start, end) seconds as soon as a segment is closed and its end,
padding included, has been read (so that a padded end is cut at the end of the recording, never past it).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Iterator

import numpy as np

SAMPLE_RATE = 16000  # the rate Silero runs at here (the timeline reads the file at this rate for it)
CHUNK, CONTEXT = 512, 64


def model_path() -> str:
  """The Silero VAD ONNX file inside the installed faster-whisper package."""
  try:
    import faster_whisper
  except ImportError as e:
    raise RuntimeError("the Silero VAD ships inside faster-whisper: pip install 'lanser-jax[label]' (or "
                       "faster-whisper), or pass --segments=windows for fixed windows") from e
  folder = os.path.join(os.path.dirname(faster_whisper.__file__), "assets")
  names = sorted(n for n in os.listdir(folder) if n.startswith("silero_vad") and n.endswith(".onnx"))
  if not names:
    raise RuntimeError(f"{folder}: no silero_vad*.onnx in this faster-whisper install; pass "
                       "--segments=windows for fixed windows")
  return os.path.join(folder, names[-1])


class SileroVad:
  """Streaming speech probabilities: `probabilities(blocks)` yields an array per block of 16 kHz samples."""

  def __init__(self, path: str | None = None):
    import onnxruntime
    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    self.path = path or model_path()
    self.session = onnxruntime.InferenceSession(self.path, sess_options=opts,
                                                providers=["CPUExecutionProvider"])

  def probabilities(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    h = np.zeros((1, 1, 128), np.float32)
    c = np.zeros((1, 1, 128), np.float32)
    context = np.zeros(CONTEXT, np.float32)
    rest = np.zeros(0, np.float32)
    for block in _with_tail(blocks):
      x = np.concatenate([rest, block])
      n = len(x) // CHUNK
      rest = x[n * CHUNK:]
      if n == 0:
        continue
      chunks = x[:n * CHUNK].reshape(n, CHUNK)
      contexts = np.concatenate([context[None], chunks[:-1, -CONTEXT:]], 0)
      context = chunks[-1, -CONTEXT:].copy()
      out, h, c = self.session.run(None, {"input": np.concatenate([contexts, chunks], 1), "h": h, "c": c})
      yield np.asarray(out, np.float32).reshape(-1)


def _with_tail(blocks):
  """The blocks, then zeros to finish the last 512-sample chunk (so the end of the recording is scored)."""
  total = 0
  for b in blocks:
    total += len(b)
    yield np.asarray(b, np.float32)
  if total % CHUNK:
    yield np.zeros(CHUNK - total % CHUNK, np.float32)


@dataclasses.dataclass(frozen=True)
class VadOptions:
  threshold: float = 0.5
  min_speech_ms: int = 250
  min_silence_ms: int = 500
  speech_pad_ms: int = 200
  max_segment_s: float = 30.0


class _Counted:
  """Passes blocks through and counts their samples (the recording's length, known at the end)."""

  def __init__(self, blocks):
    self.blocks, self.samples = blocks, 0

  def __iter__(self):
    for b in self.blocks:
      self.samples += len(b)
      yield b


def speech_segments(blocks: Iterable[np.ndarray], vad: SileroVad | None = None,
                    options: VadOptions = VadOptions()) -> Iterator[tuple[float, float]]:
  """(start, end) seconds of the speech in 16 kHz `blocks`, in order, each yielded once it is closed."""
  vad = vad or SileroVad()
  counted = _Counted(blocks)
  step = CHUNK / SAMPLE_RATE
  low = options.threshold - 0.15
  pad, min_silence, min_speech = (options.speech_pad_ms / 1000, options.min_silence_ms / 1000,
                                  options.min_speech_ms / 1000)
  state = {"start": None, "silence": None, "last_end": 0.0}

  def close(start, end):
    if end - start < min_speech:
      return []
    s = max(start - pad, state["last_end"])
    e = end + pad
    state["last_end"] = e
    return [(s, e)]

  i = 0
  closed = []  # segments whose padded end has not been read yet: held until it is, or until the end
  for probs in vad.probabilities(counted):
    for p in probs:
      t = i * step
      i += 1
      if p >= options.threshold:
        state["silence"] = None
        if state["start"] is None:
          state["start"] = t
      elif state["start"] is not None and p < low:
        if state["silence"] is None:
          state["silence"] = t
        if t + step - state["silence"] >= min_silence:
          closed += close(state["start"], state["silence"])
          state["start"] = state["silence"] = None
      if state["start"] is not None and t + step - state["start"] >= options.max_segment_s - 2 * pad:
        closed += close(state["start"], t + step)
        state["start"], state["silence"] = t + step, None
    while closed and closed[0][1] * SAMPLE_RATE <= counted.samples:
      yield closed.pop(0)
  total = counted.samples / SAMPLE_RATE
  if state["start"] is not None:
    closed += close(state["start"], state["silence"] if state["silence"] is not None else total)
  for s, e in closed:
    if s < total:
      yield s, min(e, total)


def fixed_windows(blocks: Iterable[np.ndarray], window_s: float, hop_s: float, sample_rate: int = SAMPLE_RATE,
                  min_seconds: float = 0.25) -> Iterator[tuple[float, float]]:
  """[k * hop, k * hop + window) for every window that fits in the recording, then one shorter window from
  the next start to the end when the end is not covered yet and that is at least `min_seconds` long."""
  if window_s <= 0 or hop_s <= 0:
    raise ValueError(f"window ({window_s} s) and hop ({hop_s} s) must be > 0")
  samples, k = 0, 0
  for b in blocks:
    samples += len(b)
    while (k * hop_s + window_s) * sample_rate <= samples:
      yield k * hop_s, k * hop_s + window_s
      k += 1
  total = samples / sample_rate
  covered = (k - 1) * hop_s + window_s if k else 0.0
  if covered < total and k * hop_s < total and total - k * hop_s >= min_seconds:
    yield k * hop_s, total
