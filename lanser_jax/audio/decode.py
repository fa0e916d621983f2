"""Decode, resample and validate one utterance's audio, whatever container it came in.

Every failure is an `AudioError` with a one-line reason, so the stages can list the utterance in
their errors file and carry on. Decoders, tried in order:
  parquet row ("x.parquet#row=N")  the row's embedded bytes, decoded like a file
  soundfile (libsndfile)           wav, flac, ogg, mp3 ...; reads only the needed frames
  PyAV, then the ffmpeg binary     anything else, video containers included (Condensed Movies)

Long audio is *cropped* to `max_seconds` (read from `offset`): the ASR and the features stage then
see exactly the same samples, so a weak label always describes the audio it is attached to.
Corpora of long recordings should be cut into utterances in the manifest (offset/duration) instead.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import io
import os
import shutil
import subprocess
import threading

import numpy as np
import soundfile

from lanser_jax.corpora import manifests
from lanser_jax.utils import options

# Names libsndfile cannot read: straight to PyAV/ffmpeg (the one extension list is in manifests.py).
NOT_SOUNDFILE_EXTENSIONS = manifests.VIDEO_EXTENSIONS + manifests.CONTAINER_AUDIO_EXTENSIONS


class AudioError(ValueError):
  """An utterance whose audio cannot be used; the message is the reason written to errors.jsonl."""


@dataclasses.dataclass
class Audio:
  samples: np.ndarray  # float32 [num_samples], mono, at `sample_rate`
  sample_rate: int
  source_duration: float | None  # seconds available from `offset` before cropping (None: unknown)
  cropped: bool

  @property
  def duration(self) -> float:
    return len(self.samples) / self.sample_rate

  @property
  def cropped_seconds(self) -> float:
    """Seconds of the source cut off by `max_seconds` (0 when not cropped or the length is unknown)."""
    if not self.cropped or self.source_duration is None:
      return 0.0
    return max(self.source_duration - self.duration, 0.0)


@dataclasses.dataclass(frozen=True)
class AudioOptions:
  sample_rate: int = 16000
  max_seconds: float = 30.0  # longer audio is cropped (see module docstring)
  min_seconds: float = 0.25
  silence_dbfs: float = -60.0  # peak level below which a clip counts as silent

  @classmethod
  def from_config(cls, config, **overrides) -> "AudioOptions":
    return options.from_config(cls, config, **overrides)


# ---------------------------------------------------------------------------------------------------
# Parquet rows (People's Speech on the HF hub: an `audio` struct column holding {bytes, path}).


class _ParquetRows:
  """Reads one row's audio bytes, keeping the last row group: manifests list rows in file order."""

  def __init__(self, max_files: int = 4):
    self._files: collections.OrderedDict[str, tuple] = collections.OrderedDict()
    self._max_files = max_files
    self._group_key = None
    self._group = None
    self._lock = threading.Lock()  # the stages decode on several threads

  def _open(self, path: str):
    import pyarrow.parquet as pq  # optional dependency, only for parquet corpora
    if path not in self._files:
      pf = pq.ParquetFile(path)
      starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows
                                for i in range(pf.num_row_groups)])
      self._files[path] = (pf, starts)
      if len(self._files) > self._max_files:
        self._files.popitem(last=False)
    return self._files[path]

  def read(self, path: str, row: int, column: str = "audio") -> bytes:
    with self._lock:
      return self._read(path, row, column)

  def _read(self, path: str, row: int, column: str) -> bytes:
    try:
      pf, starts = self._open(path)
    except Exception as e:
      raise AudioError(f"unreadable parquet file {path}: {type(e).__name__}: {e}") from e
    if not 0 <= row < starts[-1]:
      raise AudioError(f"{path} has {starts[-1]} rows, row {row} does not exist")
    group = int(np.searchsorted(starts, row, side="right") - 1)
    if self._group_key != (path, group):
      try:
        self._group = pf.read_row_group(group, columns=[column]).column(column)
      except Exception as e:
        raise AudioError(f"cannot read column {column!r} of {path} row group {group}: {e}") from e
      self._group_key = (path, group)
    value = self._group[row - int(starts[group])].as_py()
    data = value.get("bytes") if isinstance(value, dict) else value
    if not data:
      raise AudioError(f"{path}#row={row}: no audio bytes in column {column!r}")
    return data


_PARQUET = _ParquetRows()


# ---------------------------------------------------------------------------------------------------
# Decoders. Each returns (float32 [samples, channels], sample_rate, seconds available or None).


# libsndfile keeps the message of a failed open in one process-wide buffer: two threads opening files at once
# (the stages decode ahead on several threads) read each other's message, or "(Garbled error message from
# libsndfile)", so a rejected utterance could be listed with another file's reason. Opens are serialised;
# reading stays parallel.
_SNDFILE_OPEN = threading.Lock()


def _open_soundfile(src) -> soundfile.SoundFile:
  with _SNDFILE_OPEN:
    return soundfile.SoundFile(src)


def _decode_soundfile(src, offset: float, duration: float | None, max_seconds: float):
  with _open_soundfile(src) as f:
    sr = f.samplerate
    start = int(round(offset * sr))
    total = f.frames - start if f.frames > 0 else None
    want = int(round(min(duration if duration is not None else np.inf, max_seconds) * sr))
    if total is not None:
      if total <= 0:
        raise AudioError(f"offset {offset:.2f} s is past the end ({f.frames / sr:.2f} s)")
      want = min(want, total)
    if start:
      f.seek(start)
    data = f.read(want, dtype="float32", always_2d=True)
  available = None if total is None else total / sr
  if duration is not None and available is not None:
    available = min(available, duration)
  return data, sr, available


def _decode_pyav(src, offset: float, duration: float | None, max_seconds: float, sample_rate: int):
  import av  # faster-whisper depends on PyAV, so it is present wherever the ASR stage runs
  end = offset + min(duration if duration is not None else np.inf, max_seconds)
  chunks, n_seen = [], 0
  with av.open(src, mode="r", metadata_errors="ignore") as container:
    if not container.streams.audio:
      raise AudioError("no audio stream")
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    if offset > 0:
      container.seek(int(offset * av.time_base))  # coarse; trimmed exactly below
    first_t = None
    for frame in container.decode(stream):
      if first_t is None:
        first_t = float(frame.time) if frame.time is not None else 0.0
      for out in resampler.resample(frame):
        chunks.append(out.to_ndarray().reshape(-1))
      n_seen = sum(len(c) for c in chunks)
      if first_t + n_seen / sample_rate >= end:
        break
    for out in resampler.resample(None):
      chunks.append(out.to_ndarray().reshape(-1))
  data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
  skip = max(0, int(round((offset - (first_t or 0.0)) * sample_rate)))
  data = data[skip:skip + int(round((end - offset) * sample_rate))]
  return data[:, None], sample_rate, None


def _decode_ffmpeg(path: str, offset: float, duration: float | None, max_seconds: float,
                   sample_rate: int):
  length = min(duration if duration is not None else np.inf, max_seconds)
  cmd = ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{offset:.3f}", "-i", path, "-t",
         f"{length:.3f}", "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
  proc = subprocess.run(cmd, capture_output=True, timeout=600)
  if proc.returncode != 0:
    raise AudioError(f"ffmpeg failed: {proc.stderr.decode(errors='replace').strip()[-300:]}")
  return np.frombuffer(proc.stdout, np.float32)[:, None], sample_rate, None


def _decode_any(src, name: str, offset, duration, max_seconds, sample_rate):
  """soundfile first (exact, seekable); PyAV, then ffmpeg, for what libsndfile cannot read."""
  errors = []
  if not name.lower().endswith(NOT_SOUNDFILE_EXTENSIONS):
    try:
      return _decode_soundfile(src, offset, duration, max_seconds)
    except AudioError:
      raise
    except Exception as e:  # libsndfile raises LibsndfileError/RuntimeError on unknown formats
      errors.append(f"soundfile: {e}")
      if isinstance(src, io.BytesIO):
        src.seek(0)
  have_pyav = importlib.util.find_spec("av") is not None
  have_ffmpeg = isinstance(src, str) and shutil.which("ffmpeg") is not None
  if have_pyav:
    try:
      return _decode_pyav(src, offset, duration, max_seconds, sample_rate)
    except AudioError:
      raise
    except Exception as e:
      errors.append(f"PyAV: {type(e).__name__}: {e}")
  if have_ffmpeg:
    return _decode_ffmpeg(src, offset, duration, max_seconds, sample_rate)
  if not have_pyav:
    errors.append("no decoder for this container: install PyAV (`pip install av`) or put "
                  "ffmpeg on PATH")
  raise AudioError("unreadable audio (" + "; ".join(errors) + ")")


# ---------------------------------------------------------------------------------------------------
# Public API.


def load(audio: str, offset: float | None = None, duration: float | None = None,
         options: AudioOptions = AudioOptions()) -> Audio:
  """Decodes one manifest entry to mono float32 at `options.sample_rate`, cropped, validated."""
  offset = float(offset or 0.0)
  ref = manifests.parse_parquet_ref(audio)
  if ref is not None:
    src, name = io.BytesIO(_PARQUET.read(*ref)), ref[0]
  else:
    if not os.path.exists(audio):
      raise AudioError(f"file not found: {audio}")
    if os.path.getsize(audio) == 0:
      raise AudioError(f"empty file (0 bytes): {audio}")
    src, name = audio, audio
  data, sr, available = _decode_any(src, name, offset, duration, options.max_seconds,
                                    options.sample_rate)
  samples = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # stereo: average the channels
  samples = np.ascontiguousarray(samples, np.float32)
  if sr != options.sample_rate and len(samples):
    import librosa  # imported lazily: the ASR workers need it only for odd rates
    samples = librosa.resample(samples, orig_sr=sr, target_sr=options.sample_rate,
                               res_type="soxr_hq").astype(np.float32)
  if available is None and ref is None and len(samples) >= options.max_seconds * options.sample_rate - 1:
    available = _container_seconds(name, offset, duration)  # decoded up to the crop: how much was there?
  if available is None:
    available = len(samples) / options.sample_rate
  cropped = available > options.max_seconds + 1e-3
  result = Audio(samples, options.sample_rate, available, cropped)
  validate(result, options)
  return result


def _container_seconds(path: str, offset: float, duration: float | None) -> float | None:
  """Seconds from `offset` to the end (or `duration`) by the container's header, without decoding; None
  when it does not say. Only asked for audio that reached the crop, to count the cropped seconds."""
  try:
    import av
    with av.open(path, metadata_errors="ignore") as c:
      s = c.streams.audio[0] if c.streams.audio else None
      if s is not None and s.duration is not None:
        total = float(s.duration * s.time_base)
      elif c.duration is not None:
        total = c.duration / 1e6
      else:
        return None
  except Exception:
    return None
  left = max(total - offset, 0.0)
  return min(left, duration) if duration is not None else left


def validate(audio: Audio, options: AudioOptions):
  """Raises AudioError for audio that would make a useless or misleading training example."""
  x = audio.samples
  if x.size == 0:
    raise AudioError("empty audio (0 samples decoded)")
  if not np.all(np.isfinite(x)):
    raise AudioError("audio holds NaN or inf samples")
  if audio.duration < options.min_seconds:
    raise AudioError(f"too short: {audio.duration:.3f} s < min_seconds {options.min_seconds}")
  peak = float(np.max(np.abs(x)))
  peak_dbfs = 20 * np.log10(peak) if peak > 0 else -np.inf
  if peak_dbfs < options.silence_dbfs:
    raise AudioError(f"silent: peak {peak_dbfs:.1f} dBFS < silence_dbfs {options.silence_dbfs}")
