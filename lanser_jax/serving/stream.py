"""Streaming a recording of any length through the training's front end and windows in bounded memory.

A long file is read a block of samples at a time (`audio_blocks`), turned into log-mel frames by the
training's own `log_mel.LogMel` (`LogMelStream`: the same centred, zero-padded frames, transformed in the
same blocks of 128 frames, so the numbers equal a whole-file `LogMel.one`), and cut into evaluation windows
where `windows.window_starts` would put them (`WindowStream`: the last window still ends at the recording's
end). Only a block of samples and one window's frames are held, whatever the recording's length; a classifier
averages the windows' outputs as they come (`Classifier.forward_stream`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Iterator

import numpy as np

from lanser_jax.audio import decode
from lanser_jax.audio import log_mel as log_mel_lib

BLOCK_SECONDS = 30.0  # samples decoded per read


def audio_blocks(path: str, sample_rate: int, offset: float = 0.0, duration: float | None = None,
                 block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
  """Mono float32 blocks of `path` at `sample_rate`, from `offset` for `duration` seconds (None: to the
  end). libsndfile's formats are read block by block (resampled by a soxr stream when the file has another
  rate); anything else (video, m4a, ...) through PyAV's decoder and resampler. Faults are AudioErrors."""
  if not os.path.exists(path):
    raise decode.AudioError(f"file not found: {path}")
  if not path.lower().endswith(decode.NOT_SOUNDFILE_EXTENSIONS):
    try:
      f = decode._open_soundfile(path)
    except Exception:  # not a libsndfile format: PyAV below
      f = None
    if f is not None:
      with f:
        yield from _soundfile_blocks(f, sample_rate, offset, duration, block_seconds)
      return
  yield from _pyav_blocks(path, sample_rate, offset, duration)


def _soundfile_blocks(f, sample_rate, offset, duration, block_seconds):
  sr = f.samplerate
  start = int(round(offset * sr))
  if f.frames > 0 and start >= f.frames:
    raise decode.AudioError(f"offset {offset:.2f} s is past the end ({f.frames / sr:.2f} s)")
  if start:
    f.seek(start)
  left = int(round(duration * sr)) if duration is not None else None
  resampler = None
  if sr != sample_rate:
    import soxr  # librosa's soxr_hq resampler, as a stream
    resampler = soxr.ResampleStream(sr, sample_rate, 1, dtype="float32", quality="HQ")
  block = max(1, int(block_seconds * sr))
  while left is None or left > 0:
    n = block if left is None else min(block, left)
    data = f.read(n, dtype="float32", always_2d=True)
    last = len(data) < n or (left is not None and left - len(data) <= 0)
    if left is not None:
      left -= len(data)
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    x = np.ascontiguousarray(x, np.float32)
    if resampler is not None:
      x = resampler.resample_chunk(x, last=last)
    if len(x):
      yield x
    if last:
      return


def _pyav_blocks(path, sample_rate, offset, duration):
  try:
    import av
  except ImportError as e:
    raise decode.AudioError(f"{path}: not a libsndfile format and PyAV is not installed "
                            "(`pip install av`)") from e
  end = None if duration is None else offset + duration
  try:
    with av.open(path, mode="r", metadata_errors="ignore") as container:
      if not container.streams.audio:
        raise decode.AudioError("no audio stream")
      stream = container.streams.audio[0]
      resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
      if offset > 0:
        container.seek(int(offset * av.time_base))  # coarse; trimmed exactly below
      t = None  # seconds of the next sample to yield
      for frame in _frames_then_flush(container, stream):
        outs = resampler.resample(frame) if frame is not None else resampler.resample(None)
        for out in outs:
          x = out.to_ndarray().reshape(-1).astype(np.float32)
          if t is None:
            t = float(frame.time) if frame is not None and frame.time is not None else 0.0
          if t < offset:  # before the offset: drop
            x = x[int(round((offset - t) * sample_rate)):]
            t = offset
          if end is not None:
            x = x[:max(0, int(round((end - t) * sample_rate)))]
          if len(x):
            yield x
          t += len(x) / sample_rate
          if end is not None and t >= end - 0.5 / sample_rate:
            return
  except decode.AudioError:
    raise
  except Exception as e:
    raise decode.AudioError(f"unreadable audio (PyAV: {type(e).__name__}: {e})") from e


def _frames_then_flush(container, stream):
  """The stream's decoded frames, then None (the resampler's flush)."""
  yield from container.decode(stream)
  yield None


class LogMelStream:
  """Samples in, log-mel frames out: `push(samples)` returns the frames whose samples have all arrived
  (in whole blocks of `log_mel.block_frames`, so each block is the whole-file computation's block),
  `finish()` the rest. The frames are those of `LogMel.one` on the whole recording."""

  def __init__(self, log_mel: log_mel_lib.LogMel):
    self.log_mel = log_mel
    o = log_mel.options
    self.n_fft, self.hop = o.fft_length, o.hop_length
    self._buffer = np.zeros(self.n_fft // 2, np.float32)  # centred frames: half a window of zeros first
    self.samples = 0  # samples pushed
    self.frames = 0  # frames returned

  def _take(self, count: int) -> np.ndarray:
    view = np.lib.stride_tricks.sliding_window_view(self._buffer, self.n_fft)[::self.hop][:count]
    out = self.log_mel.transform(view)
    self._buffer = self._buffer[count * self.hop:]
    self.frames += count
    return out

  def push(self, samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, np.float32)
    self.samples += len(samples)
    self._buffer = np.concatenate([self._buffer, samples])
    ready = (len(self._buffer) - self.n_fft) // self.hop + 1 if len(self._buffer) >= self.n_fft else 0
    ready -= ready % self.log_mel.block_frames
    return self._take(ready) if ready > 0 else np.zeros((0, self.log_mel.options.num_mel_bins), np.float32)

  def finish(self) -> np.ndarray:
    self._buffer = np.concatenate([self._buffer, np.zeros(self.n_fft // 2, np.float32)])
    total = self.log_mel.options.num_frames(self.samples)
    return self._take(total - self.frames)


@dataclasses.dataclass
class Window:
  start: int  # first frame
  crop: np.ndarray  # [<= window, bins] frames (shorter only for a recording shorter than one window)


class WindowStream:
  """Frames in, evaluation windows out, where `windows.window_starts(total, window, hop)` puts them for the
  total that is only known at `finish()`: a window starting at s is sure to be one of them once a frame past
  s + window has arrived; the last one (ending at the end) is emitted by `finish`."""

  def __init__(self, window: int, hop: int):
    self.window, self.hop = window, hop
    self._frames = None  # frames from `_offset` on
    self._offset = 0
    self._next = 0  # start of the next window to emit
    self.total = 0

  def push(self, frames: np.ndarray) -> list[Window]:
    if len(frames) == 0:
      return []
    self._frames = frames if self._frames is None else np.concatenate([self._frames, frames])
    self.total += len(frames)
    out = []
    while self.total > self._next + self.window:
      s = self._next - self._offset
      out.append(Window(self._next, self._frames[s:s + self.window].copy()))
      self._next += self.hop
    keep_from = max(0, min(self._next, self.total - self.window))  # the last window may still need them
    if keep_from > self._offset:
      self._frames, self._offset = self._frames[keep_from - self._offset:], keep_from
    return out

  def finish(self) -> list[Window]:
    if self.total == 0:
      return []
    last = max(self.total - self.window, 0)
    return [Window(last, self._frames[last - self._offset:].copy())]


@dataclasses.dataclass
class StreamStats:
  """What a stream read: for the checks `decode.validate` makes on a whole clip, and for the output."""
  samples: int = 0
  peak: float = 0.0
  finite: bool = True


def log_mel_windows(blocks: Iterable[np.ndarray], log_mel: log_mel_lib.LogMel, window: int, hop: int,
                    stats: StreamStats, dtype=np.float16) -> Iterator[Window]:
  """The evaluation windows ([<= window, bins] crops in the records' `dtype`) of a stream of sample
  blocks, in order; `stats` is filled as the blocks pass."""
  mel_stream, win_stream = LogMelStream(log_mel), WindowStream(window, hop)
  for x in blocks:
    stats.samples += len(x)
    stats.finite = stats.finite and bool(np.all(np.isfinite(x)))
    if len(x):
      stats.peak = max(stats.peak, float(np.max(np.abs(x))))
    for w in win_stream.push(mel_stream.push(x).astype(dtype)):
      yield w
  yield from win_stream.push(mel_stream.finish().astype(dtype))
  yield from win_stream.finish()


def validate(stats: StreamStats, options: decode.AudioOptions, where: str):
  """The checks `decode.validate` makes on a whole clip, on what a stream read; the error names `where`."""
  seconds = stats.samples / options.sample_rate
  peak_dbfs = 20 * np.log10(stats.peak) if stats.peak > 0 else -np.inf
  if stats.samples == 0:
    reason = "empty audio (0 samples decoded)"
  elif not stats.finite:
    reason = "audio holds NaN or inf samples"
  elif seconds < options.min_seconds:
    reason = f"too short: {seconds:.3f} s < min_seconds {options.min_seconds}"
  elif peak_dbfs < options.silence_dbfs:
    reason = f"silent: peak {peak_dbfs:.1f} dBFS < silence_dbfs {options.silence_dbfs}"
  else:
    return
  raise decode.AudioError(f"{where}: {reason}")
