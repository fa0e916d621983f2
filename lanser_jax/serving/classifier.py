"""Using a trained model: restore a run's checkpoint, classify audio, extract pooled embeddings.

  clf = lanser_jax.load("workdirs/iemocap")   # best checkpoint of the run, else the latest
  clf.predict("clip.wav").top(3)              # [("ang", 0.71), ("neu", 0.2), ...]
  clf.embed(["a.wav", "b.wav"])               # float32 [2, dim]

The user never re-enters a front-end setting: training wrote them into the workdir (train.save_run_info):
config.json (model, crop and hop), data/dataset.json["feature"] (sample rate, log-mel options),
data/stats.json (normalisation), data/label_names.json. An utterance is cut into the training's evaluation
windows; the windows of many utterances go through one jitted apply in fixed-size batches (padded, so nothing
recompiles), and logits and embeddings are averaged per utterance. Windowing, batching and averaging are
lanser_jax/input_pipeline/windows.py's and the forward pass is models.window_forward, the same code the training's
whole-utterance evaluation runs, so a record served here gets the logits its evaluation computed.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lanser_jax.input_pipeline import pipeline, windows
from lanser_jax.audio import decode
from lanser_jax.engine import checkpointing, value_checks
from lanser_jax import config_lib, models
from lanser_jax.audio import log_mel as log_mel_lib
from lanser_jax.utils import faults, fileio

_LOG = logging.getLogger(__name__)
DEFAULT_MAX_SECONDS = None  # None: the whole of every file (longer files are streamed); else cropped there
IN_MEMORY_SECONDS = 600.0  # a file up to this long is decoded at once; a longer one is streamed (stream.py)


@dataclasses.dataclass
class Clip:
  """A file read for classification: its log-mel, or None for a recording longer than IN_MEMORY_SECONDS
  (Classifier.forward_clips streams it), with the seconds classified and the seconds cut off by a
  max_seconds the user set (None: cut, but the container does not say how much was left)."""
  path: str
  log_mel: np.ndarray | None
  seconds: float
  cropped_seconds: float | None = 0.0
  offset: float = 0.0
  duration: float | None = None


@dataclasses.dataclass(frozen=True)
class Prediction:
  """Class probabilities of one utterance: softmax of its window-averaged logits."""
  probabilities: np.ndarray  # float32 [num_classes]
  logits: np.ndarray  # float32 [num_classes], window-averaged
  label_names: tuple[str, ...]

  @property
  def label(self) -> str:
    return self.label_names[int(np.argmax(self.probabilities))]

  @property
  def probability(self) -> float:
    return float(np.max(self.probabilities))

  def top(self, k: int = 3) -> list[tuple[str, float]]:
    order = np.argsort(-self.probabilities, kind="stable")[:k]
    return [(self.label_names[i], float(self.probabilities[i])) for i in order]

  def as_dict(self) -> dict[str, float]:
    return {n: float(p) for n, p in zip(self.label_names, self.probabilities)}


# ---------------------------------------------------------------------------------------------------
# Finding and reading a run.


def find_workdir(path: str) -> str:
  """The run folder (with config.json and data/) of a workdir, checkpoints folder, step or state folder."""
  here = fileio.absolute(path.rstrip("/"))
  for _ in range(4):  # workdir / checkpoints / <step> / state
    if fileio.exists(os.path.join(here, "config.json")) and fileio.isdir(os.path.join(here, "data")):
      return here
    if fileio.is_url(here) and here.count("/") <= 3:  # gs://bucket/x: nothing above the bucket's top
      break
    here = os.path.dirname(here)
  top = fileio.absolute(path.rstrip("/"))
  below = sorted(os.path.relpath(os.path.dirname(c), top) for depth in ("*", "*/*")
                 for c in fileio.glob(os.path.join(top, depth, "config.json"))
                 if fileio.isdir(os.path.join(os.path.dirname(c), "data")))
  hint = (f"the runs below it: {', '.join(below[:6])}{', ...' if len(below) > 6 else ''} (name one)" if below
          else "pass the folder of one training run (or workdir= to say which run's settings to use)")
  raise WorkdirNotFound(f"{path}: no training workdir (config.json and data/) at or above it; {hint}")


class WorkdirNotFound(faults.Fault, FileNotFoundError):
  """A path that is no run and lies in none; a fault: the commands end with its one line."""


def read_config(workdir: str, overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """config.json of a run, with `{"model.width": 0.5, ...}` overrides (unknown keys fail)."""
  config = ml_collections.ConfigDict(fileio.read_json(os.path.join(workdir, "config.json")))
  for key, value in (overrides or {}).items():
    config_lib.set_override(config, key, value, where=f"{workdir}/config.json")
  return config


def _read_json(path: str) -> Any:
  if not fileio.exists(path):
    raise FileNotFoundError(f"{path}: missing; the workdir was not written by lanser_jax.train")
  return fileio.read_json(path)


def load(path: str, step: int | str | None = None, *, workdir: str | None = None,
         overrides: Mapping[str, Any] | None = None, batch_size: int = 32,
         devices: Sequence[jax.Device] | None = None,
         max_seconds: float | None = DEFAULT_MAX_SECONDS) -> "Classifier":
  """Restores a run's parameters and batch statistics for inference.

  path: a workdir, its checkpoints/ folder, a step folder or a step's state folder.
  step: None -> the best checkpoint (by the run's eval metric), else the latest; or a step number,
    "best", "latest". Ignored when path names a step.
  workdir: whose config and data description to use (default: found at or above `path`).
  overrides: config changes, e.g. {"model.width": 0.5}; a checkpoint that does not fit the resulting
    model fails with a message naming each array that differs.
  devices: None -> one device (the default); several -> window batches are sharded over them.
  max_seconds: None (the default) classifies the whole of every file, streaming long ones in bounded memory;
    a number classifies only the first max_seconds of each (Clip.cropped_seconds says what was cut).
  """
  workdir = find_workdir(workdir or path)
  config = read_config(workdir, overrides)
  label_names = [str(n) for n in _read_json(os.path.join(workdir, "data", "label_names.json"))]
  info = _read_json(os.path.join(workdir, "data", "dataset.json"))
  normalizer = pipeline.Normalizer.from_file(os.path.join(workdir, "data", "stats.json"))
  state_path = checkpointing.resolve_state_path(path, "best" if step is None else step)

  model = models.model_from_config(config, len(label_names))
  mel_bins = normalizer.mean.shape[0]
  # The tree the saved config implies; the checkpoint must match it array for array.
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                               jnp.zeros((1, config.data.crop_frames, mel_bins))))
  loaded = checkpointing.load_variables(state_path)  # host numpy, whatever mesh wrote it
  checkpointing.check_fits(loaded["params"], abstract["params"], state_path)
  checkpointing.check_fits(loaded.get("batch_stats", {}), abstract.get("batch_stats", {}), state_path)
  variables = {"params": loaded["params"], "batch_stats": loaded.get("batch_stats", {})}
  return Classifier(model, variables, config=config, label_names=label_names, normalizer=normalizer,
                    feature=info.get("feature") or {}, batch_size=batch_size, devices=devices,
                    max_seconds=max_seconds, state_path=state_path)


# ---------------------------------------------------------------------------------------------------
# The classifier.


class Classifier:
  """A restored model with its training front end; see the module docstring."""

  def __init__(self, model: nn.Module, variables: dict[str, Any], *, config: ml_collections.ConfigDict,
               label_names: Sequence[str], normalizer: pipeline.Normalizer, feature: Mapping[str, Any],
               batch_size: int = 32, devices: Sequence[jax.Device] | None = None,
               max_seconds: float | None = DEFAULT_MAX_SECONDS, state_path: str = ""):
    self.config, self.label_names = config, tuple(label_names)
    self.model = model  # the Flax module (serving/export.py converts it)
    self.normalizer, self.feature, self.state_path = normalizer, dict(feature), state_path
    self.step = _step_of(state_path)
    self.crop_frames = int(config.data.crop_frames)
    self.hop_frames = int(config.data.eval_hop_frames)
    self.mel_bins = int(normalizer.mean.shape[0])
    self.batch_size = int(batch_size)
    self.max_seconds = max_seconds  # None: whole files (see load)
    # Records store float16 log-mels; rounding ours the same way gives the model exactly what it saw.
    self._feature_dtype = np.dtype(self.feature.get("dtype", "float16"))

    devices = list(devices) if devices else [jax.local_devices()[0]]
    if self.batch_size % len(devices):
      raise ValueError(f"batch_size {self.batch_size} is not divisible by {len(devices)} devices")
    mesh = Mesh(np.asarray(devices), ("data",))
    self._data_sharding = NamedSharding(mesh, P("data"))
    self._variables = jax.device_put(variables, NamedSharding(mesh, P()))

    self._apply = jax.jit(models.window_forward(model, normalizer))  # evaluation's forward pass
    self._log_mel = None  # built on first audio input (needs librosa's mel matrix)
    self.audio_options = None
    if self.feature.get("type") == "log_mel":
      self.log_mel_options = log_mel_lib.LogMelOptions.from_config(self.feature)
      if self.log_mel_options.num_mel_bins != self.mel_bins:
        raise ValueError(f"dataset.json feature has {self.log_mel_options.num_mel_bins} mel bins, "
                         f"stats.json {self.mel_bins}")
      self.audio_options = decode.AudioOptions(
          sample_rate=self.log_mel_options.sample_rate,
          max_seconds=IN_MEMORY_SECONDS if max_seconds is None else max_seconds)
    else:
      self.log_mel_options = None

  @property
  def sample_rate(self) -> int | None:
    return self.audio_options.sample_rate if self.audio_options else None

  # ----- Front end ------------------------------------------------------------------------------------

  def waveform(self, audio: Any, sample_rate: int | None = None) -> np.ndarray:
    """Mono float32 samples at the model's rate from a path or a [samples] array (+ its sample_rate)."""
    self.require_audio_front_end()
    if isinstance(audio, (str, os.PathLike)):
      return decode.load(os.fspath(audio), options=self.audio_options).samples
    x = as_float_samples(audio)
    if x.ndim != 1:
      raise ValueError(f"a waveform must be a 1-D [samples] array, got shape {x.shape} (pass a list "
                       "for several utterances; average the channels of stereo audio)")
    if sample_rate is None:
      raise ValueError(f"pass sample_rate= with a waveform (the model expects {self.sample_rate} Hz)")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real) or not sample_rate > 0:
      raise ValueError(f"sample_rate={sample_rate!r}: must be a number of samples per second > 0 (the model "
                       f"expects {self.sample_rate} Hz)")
    if sample_rate != self.sample_rate and x.size:
      import librosa  # lazily, as audio.load does: only for other rates
      x = librosa.resample(x, orig_sr=sample_rate, target_sr=self.sample_rate,
                           res_type="soxr_hq").astype(np.float32)
    if self.max_seconds is not None:
      x = x[:int(self.max_seconds * self.sample_rate)]
    decode.validate(decode.Audio(x, self.sample_rate, None, False), self.audio_options)
    return x

  def log_mel(self, audio: Any, sample_rate: int | None = None) -> np.ndarray:
    """[frames, mel_bins] log-mel of one path or waveform, exactly as the training features were made."""
    samples = self.waveform(audio, sample_rate)
    return self.log_mel_transform.one(samples).astype(self._feature_dtype).astype(np.float32)

  @property
  def log_mel_transform(self) -> log_mel_lib.LogMel:
    """The training's log-mel transform (built on first use: it needs librosa's mel matrix)."""
    self.require_audio_front_end()
    if self._log_mel is None:
      self._log_mel = log_mel_lib.LogMel(self.log_mel_options)
    return self._log_mel

  def require_audio_front_end(self):
    if self.audio_options is None:
      raise ValueError("this run's features were not computed from audio by lanser_jax.audio.log_mel "
                       f"(dataset.json feature: {self.feature}); classify log-mels with predict_log_mel")

  # ----- Model ----------------------------------------------------------------------------------------

  def forward_log_mel(self, log_mels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Window-averaged (logits [n, classes], embeddings [n, dim]) of un-normalised log-mels.

    The windows are laid out, batched and averaged by lanser_jax/input_pipeline/windows.py and applied through
    models.window_forward, as the training's evaluation does, from float16 crops (the records' dtype):
    a record gives here the logits its evaluation gave."""
    mels = {u: self._as_feature(m, u) for u, m in enumerate(log_mels)}
    self._warn_scale(mels)
    n, bs = len(mels), self.batch_size
    layout = np.asarray(windows.layout([m.shape[0] for m in mels.values()], self.crop_frames,
                                       self.hop_frames), np.int64).reshape(-1, 2)
    pending = []  # device results: fetched after the loop, so building batch k+1 overlaps computing k
    for b in range(0, len(layout), bs):
      batch = windows.fill_batch(mels, layout[b:b + bs, 0], layout[b:b + bs, 1], bs, self.crop_frames,
                                 self.mel_bins, self._feature_dtype)
      inputs = {"log_mel": batch["log_mel"], "length": batch["length"]}
      pending.append((batch["utt"], self._apply(self._variables, jax.device_put(inputs, self._data_sharding))))
    if not pending:
      return np.zeros((0, len(self.label_names)), np.float32), np.zeros((0, 0), np.float32)
    utt = np.concatenate([u for u, _ in pending])
    logits = windows.average(utt, np.concatenate([np.asarray(out[0]) for _, out in pending]), n)
    embedding = windows.average(utt, np.concatenate([np.asarray(out[1]) for _, out in pending]), n)
    self._require_finite(logits, embedding, [f"input {u}" for u in range(n)])
    return logits, embedding

  def _require_finite(self, logits: np.ndarray, embedding: np.ndarray, names: Sequence[str]):
    """Raises NonFiniteValueError naming the first of the inputs (rows, named by `names`) whose logits or
    embedding are NaN or infinite: its log-mel was finite, so the values overflowed in the model."""
    for name, x in (("logits", logits), ("embedding", embedding)):
      bad = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
      if bad.size:
        raise value_checks.NonFiniteValueError(
            f"{names[bad[0]]}: its {name} are NaN or infinite ({bad.size} of {len(names)} inputs) with the "
            f"parameters of {self.state_path or 'this classifier'}; its log-mel was finite, so the values "
            "overflowed: check the input's scale")

  def _warn_scale(self, mels: Mapping[int, np.ndarray]):
    """One warning naming the inputs whose log-mel is far outside the training statistics (value_checks'
    SCALE_LIMIT_STD rule)."""
    far = [(u, value_checks.scale_distance(m, self.normalizer.mean, self.normalizer.std)) for u, m in mels.items()]
    far = [(u, d) for u, d in far if d > value_checks.SCALE_LIMIT_STD]
    if far:
      u, _ = far[0]
      what = f"input {u}" + (f" (and {len(far) - 1} more inputs)" if len(far) > 1 else "")
      _LOG.warning(value_checks.scale_warning(mels[u], self.normalizer.mean, self.normalizer.std, what))

  def _as_feature(self, log_mel: np.ndarray, index: int) -> np.ndarray:
    """A [frames, mel_bins] log-mel checked and rounded to the records' dtype (what training read)."""
    m = np.asarray(log_mel)
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] != self.mel_bins:
      raise ValueError(f"log-mel {index}: expected a [frames > 0, {self.mel_bins}] matrix, got shape "
                       f"{m.shape}")
    if not np.all(np.isfinite(m)):
      raise ValueError(f"log-mel {index}: holds NaN or inf")
    if np.issubdtype(self._feature_dtype, np.floating) and np.max(np.abs(m)) > np.finfo(self._feature_dtype).max:
      raise ValueError(f"log-mel {index}: values beyond the range of {self._feature_dtype} (the records' "
                       f"dtype; max |value| {float(np.max(np.abs(m))):.4g})")
    return m.astype(self._feature_dtype)

  def forward_stream(self, blocks, where: str = "stream") -> tuple[np.ndarray, np.ndarray, float]:
    """(logits [classes], embedding [dim], seconds) of one recording given as blocks of samples at the
    model's rate: its windows (stream.log_mel_windows: the training's log-mel and windows, the numbers of
    `forward_log_mel` on the whole log-mel) go through the model in fixed-size batches as they arrive and
    are averaged, so memory stays bounded whatever the length."""
    from lanser_jax.serving import stream
    stats = stream.StreamStats()
    sums, count = None, 0
    pending = []

    def run(batch_windows):
      mels = {r: w.crop for r, w in enumerate(batch_windows)}
      batch = windows.fill_batch(mels, np.arange(len(mels)), np.zeros(len(mels), np.int64), self.batch_size,
                                 self.crop_frames, self.mel_bins, self._feature_dtype)
      out = self._apply(self._variables, jax.device_put({"log_mel": batch["log_mel"], "length": batch["length"]},
                                                        self._data_sharding))
      return len(batch_windows), out

    def collect(n, out):
      nonlocal sums, count
      rows = [np.asarray(o[:n], np.float64).sum(0) for o in out]
      sums = rows if sums is None else [a + b for a, b in zip(sums, rows)]
      count += n

    for w in stream.log_mel_windows(blocks, self.log_mel_transform, self.crop_frames, self.hop_frames, stats,
                                    self._feature_dtype):
      pending.append(w)
      if len(pending) == self.batch_size:
        collect(*run(pending))
        pending = []
    if pending:
      collect(*run(pending))
    stream.validate(stats, self.audio_options, where)
    logits, embedding = (np.asarray(x / count, np.float32) for x in sums)
    self._require_finite(logits[None], embedding[None], [where])
    return logits, embedding, stats.samples / self.sample_rate

  def read_clip(self, path: str, offset: float | None = None, duration: float | None = None) -> Clip:
    """A file (from `offset`, for `duration` s) read for `forward_clips`: decoded at once up to
    audio_options.max_seconds; past that streamed later (max_seconds=None) or cut (a number)."""
    audio = decode.load(os.fspath(path), offset, duration, self.audio_options)
    limit = self.audio_options.max_seconds
    if not audio.cropped and audio.duration >= limit - 1 / self.sample_rate:  # at the limit: was there more?
      audio.cropped, audio.source_duration = True, None  # (a container whose header gives no length)
    if audio.cropped and self.max_seconds is None:
      return Clip(os.fspath(path), None, audio.source_duration or 0.0, 0.0, float(offset or 0.0), duration)
    mel = self.log_mel_transform.one(audio.samples).astype(self._feature_dtype).astype(np.float32)
    cut = (audio.cropped_seconds if audio.source_duration is not None else None) if audio.cropped else 0.0
    return Clip(os.fspath(path), mel, audio.duration, cut, float(offset or 0.0), duration)

  def forward_clips(self, clips: Sequence[Clip]) -> tuple[np.ndarray, np.ndarray]:
    """(logits [n, classes], embeddings [n, dim]) of `read_clip`'s clips: those in memory share batches
    (forward_log_mel); each long one is streamed through forward_stream, whole."""
    from lanser_jax.serving import stream
    short = [i for i, c in enumerate(clips) if c.log_mel is not None]
    logits, emb = self.forward_log_mel([clips[i].log_mel for i in short])
    out_l = np.zeros((len(clips), len(self.label_names)), np.float32)
    out_e = None if not short else np.zeros((len(clips), emb.shape[1]), np.float32)
    for j, i in enumerate(short):
      out_l[i], out_e[i] = logits[j], emb[j]
    for i, c in enumerate(clips):
      if c.log_mel is None:
        blocks = stream.audio_blocks(c.path, self.sample_rate, c.offset, c.duration)
        l, e, c.seconds = self.forward_stream(blocks, c.path)
        if out_e is None:
          out_e = np.zeros((len(clips), e.shape[0]), np.float32)
        out_l[i], out_e[i] = l, e
    return out_l, out_e if out_e is not None else np.zeros((len(clips), 0), np.float32)

  def forward_each(self, clips: Sequence[Clip]) -> list:
    """forward_clips per clip, for commands that go on past a bad file: [(logits [classes], embedding [dim])
    or the AudioError/ValueError of a streamed clip that failed (e.g. silent, or unreadable after its start)]."""
    short = [c for c in clips if c.log_mel is not None]
    logits, emb = self.forward_clips(short) if short else (None, None)
    done = iter(zip(logits, emb) if short else [])
    out = []
    for c in clips:
      if c.log_mel is not None:
        out.append(next(done))
        continue
      try:
        l, e = self.forward_clips([c])
        out.append((l[0], e[0]))
      except (decode.AudioError, ValueError) as err:
        out.append(err)
    return out

  def predictions_from_logits(self, logits: np.ndarray) -> list[Prediction]:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    probs = (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)
    return [Prediction(p, l, self.label_names) for p, l in zip(probs, logits)]

  # ----- Public API -----------------------------------------------------------------------------------

  def predict_log_mel(self, log_mel):
    """Prediction(s) for one [frames, mel_bins] log-mel (as stored in the records) or a list of them."""
    single = not isinstance(log_mel, (list, tuple)) and np.ndim(log_mel) == 2
    preds = self.predictions_from_logits(self.forward_log_mel([log_mel] if single else list(log_mel))[0])
    return preds[0] if single else preds

  def embed_log_mel(self, log_mel) -> np.ndarray:
    """Window-averaged embedding: [dim] for one log-mel, [n, dim] for a list."""
    single = not isinstance(log_mel, (list, tuple)) and np.ndim(log_mel) == 2
    emb = self.forward_log_mel([log_mel] if single else list(log_mel))[1]
    return emb[0] if single else emb

  def predict(self, audio, sample_rate: int | None = None):
    """Prediction for a path or waveform; a list of Predictions for a list of them."""
    single, items = _one_or_many(audio)
    preds = self.predictions_from_logits(self._forward_items(items, sample_rate)[0])
    return preds[0] if single else preds

  def embed(self, audio, sample_rate: int | None = None) -> np.ndarray:
    """Pooled, window-averaged embedding: [dim] for one path or waveform, [n, dim] for a list."""
    single, items = _one_or_many(audio)
    emb = self._forward_items(items, sample_rate)[1]
    return emb[0] if single else emb

  def predict_and_embed(self, audio, sample_rate: int | None = None) -> tuple[list[Prediction], np.ndarray]:
    """Both, from one pass over a list of paths or waveforms."""
    _, items = _one_or_many(audio)
    logits, emb = self._forward_items(items, sample_rate)
    return self.predictions_from_logits(logits), emb

  def timeline(self, audio, sample_rate: int | None = None, *, segments: str = "vad",
               window_seconds: float = 3.0, hop_seconds: float = 1.5, vad_options=None) -> list:
    """[timeline.Segment(start, end, label, probability, probabilities, error)] of a path (streamed in
    bounded memory) or waveform: its speech segments (segments="vad": Silero VAD, vad.VadOptions) or fixed
    windows (segments="windows"), each classified as evaluation would classify that stretch of audio."""
    from lanser_jax.serving import timeline as timeline_lib
    spans = timeline_lib.spans(self, audio, sample_rate, segments, window_seconds, hop_seconds, vad_options)
    return list(timeline_lib.classify(self, audio, spans, sample_rate))

  def _forward_items(self, items, sample_rate):
    """Paths (whole files, long ones streamed) and waveforms, through forward_clips."""
    clips = [self.read_clip(a) if isinstance(a, (str, os.PathLike))
             else Clip("<waveform>", self.log_mel(a, sample_rate), 0.0) for a in items]
    return self.forward_clips(clips)


class _QuietOrbax(logging.Filter):
  """Orbax warns on every read-only restore (no save interval, no metadata file); a CLI user can do
  nothing about them. Its errors still show."""

  def filter(self, record):
    return record.levelno >= logging.ERROR or "/orbax/" not in record.pathname


def quiet_orbax():
  """For the command-line tools: hides Orbax's read-only warnings."""
  logging.getLogger("absl").addFilter(_QuietOrbax())


def as_float_samples(audio: Any) -> np.ndarray:
  """float32 samples of a waveform; integer PCM (int8, uint8, int16, int32, as WAV files store them) is scaled
  to [-1, 1] with a warning, as the model was trained on float samples in [-1, 1]; other integer widths (a
  list of Python ints is int64) are refused."""
  x = np.asarray(audio)
  if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.number)):
    raise ValueError(f"a waveform must be numeric samples, got dtype {x.dtype}")
  if np.issubdtype(x.dtype, np.integer):
    if x.dtype not in (np.int8, np.uint8, np.int16, np.int32):
      raise ValueError(f"a waveform of dtype {x.dtype}: integer samples of no PCM width (8, 16 or 32 bits), so "
                       "of unknown scale; pass float samples in [-1, 1] or int16/int32 PCM")
    info = np.iinfo(x.dtype)
    offset = (int(info.max) + 1) // 2 if info.min == 0 else 0  # unsigned PCM (8-bit WAV) is centred on 128
    scale = float(int(info.max) + 1 - offset)
    _LOG.warning(f"waveform of dtype {x.dtype}: integer PCM, scaled to float samples in [-1, 1] "
                 f"((x - {offset}) / {scale:g}); pass float samples to silence this")
    return ((x.astype(np.float64) - offset) / scale).astype(np.float32)
  return x.astype(np.float32)


def _one_or_many(audio) -> tuple[bool, list]:
  if isinstance(audio, (list, tuple)):
    return False, list(audio)
  return True, [audio]


def _step_of(state_path: str) -> int | None:
  name = os.path.basename(os.path.dirname(state_path))
  return int(name) if name.isdigit() else None
