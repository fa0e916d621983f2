"""Grain input pipelines over feature shards (see records.py for the format): the host half of the input.

Training: batch b -> the record indices of this process's rows of global batch b and a random word per row
(`SampledBatches`: the project's sampler, sampler.py: one seeded permutation per epoch, every record once per
epoch) -> one map per batch that reads the batch's records one after another, decodes them (a view of the
record's bytes) and copies a random `crop_frames` window of each, placed by the row's word, into one
preallocated float16 array, with each crop's length. Normalisation, the float32 cast and the padding mask are
the device half (`Normalizer.device`, traced into the jitted train and eval steps), so the host does no
per-frame arithmetic and hands over half the bytes. A batch is a function of (seed, batch index) alone, so
`start_batch` resumes anywhere; the iterator is a Grain `DatasetIterator`, so its position is also saved in
checkpoints.

Evaluation: every utterance of this process's slice exactly once and whole. Utterances longer than the crop are
cut into overlapping windows; the model's logits are averaged over an utterance's windows (the windowing is
lanser_jax/input_pipeline/windows.py's, which serving uses too). Batches are padded to
a fixed size (weight 0) so the last partial batch is included without a recompile; Grain builds them (one map
per batch, the training's worker options).

`on_device=False` gives the finished float32 + mask batches on the host instead (the same values), for callers
without a jitted step of their own.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Iterator, Sequence

import grain
import numpy as np
from array_record.python import array_record_module

from lanser_jax.input_pipeline import records, sampler
from lanser_jax.input_pipeline import windows as windows_lib


def open_source(data_dir: str, split: str) -> grain.sources.ArrayRecordDataSource:
  """The split's records in shard order; fails naming a shard of another record format (records.check_format)
  or one the ArrayRecord reader cannot open (a truncated or overwritten file)."""
  records.check_format(data_dir)
  paths = records.list_shards(data_dir, split)
  try:
    return grain.sources.ArrayRecordDataSource(paths)
  except Exception as e:  # the C++ reader's error names no file: find the shard that does not open
    raise records.RecordError(f"{_unopenable(paths) or data_dir}: the ArrayRecord reader cannot open this "
                              f"shard of split {split!r} ({type(e).__name__}: {str(e)[:300]}); a truncated or "
                              f"damaged file: {records.REWRITE}") from None


def _unopenable(paths: Sequence[str]) -> str | None:
  for path in paths:
    try:
      reader = array_record_module.ArrayRecordReader(path, "readahead_buffer_size:0")
      reader.close()
    except Exception:  # noqa: BLE001 -- any failure to open is what we look for
      return path
  return None


def locate(data_dir: str, split: str, key: int) -> tuple[str, int]:
  """(shard path, index within the shard) of record `key` of a split (records are in shard order)."""
  start = 0
  for path in records.list_shards(data_dir, split):
    try:
      reader = array_record_module.ArrayRecordReader(path, "readahead_buffer_size:0")
      count = reader.num_records()
      reader.close()
    except Exception:  # noqa: BLE001 -- this shard does not open: it is the one
      return path, key - start
    if key < start + count:
      return path, key - start
    start += count
  return os.path.join(data_dir, f"{split}-*"), key


def read_example(source, key: int, data_dir: str, split: str) -> records.Example:
  """Record `key` of a split, decoded; a record that does not read or decode is a RecordError naming its
  shard file and its index there."""
  try:
    return records.decode(source[key], where=f"{split} record {key}")
  except Exception as e:  # noqa: BLE001 -- the reader's RuntimeError or decode's RecordError: name the file
    path, index = locate(data_dir, split, key)
    detail = str(e) if isinstance(e, records.RecordError) else f"{type(e).__name__}: {str(e)[:300]}"
    raise records.RecordError(f"{path}: record {index} (record {key} of split {split!r}) cannot be read "
                              f"({detail}); a damaged shard: {records.REWRITE}") from None


@dataclasses.dataclass(frozen=True)
class Normalizer:
  """Per-mel-bin standardisation; padded frames stay 0 (the mean) after it."""
  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def from_file(cls, path: str) -> "Normalizer":
    mean, std = records.read_stats(path)
    return cls(mean, std)

  @property
  def mel_bins(self) -> int:
    return self.mean.shape[0]

  def device(self, batch: dict[str, Any]) -> tuple[Any, Any]:
    """The device half of the input, traced inside a jitted step: float16 crops [b, frames, bins] and their
    `length` [b] -> normalised float32 features with padded frames 0 (the mean), and the frame mask. It is
    elementwise, so it runs sharded as the batch is; float32 arithmetic as `host` does."""
    import jax.numpy as jnp  # here, so that Grain worker processes never import JAX
    x = batch["log_mel"]
    mask = jnp.arange(x.shape[1])[None, :] < batch["length"][:, None]
    normed = (x.astype(jnp.float32) - self.mean) / self.std
    return jnp.where(mask[:, :, None], normed, 0.0), mask

  def host(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`device` in NumPy: a float16 + length batch -> the float32 `log_mel` + `mask` batch."""
    out = {k: v for k, v in batch.items() if k != "length"}
    frames = batch["log_mel"].shape[1]
    mask = np.arange(frames)[None, :] < batch["length"][:, None]
    normed = (batch["log_mel"].astype(np.float32) - self.mean) / self.std
    normed[~mask] = 0.0
    out["log_mel"], out["mask"] = normed, mask
    return out


def _targets(ex: records.Example, target: str, num_classes: int, where: str) -> dict[str, np.ndarray]:
  if target == "scores":
    if ex.scores is None or ex.scores.shape != (num_classes,):
      got = None if ex.scores is None else ex.scores.shape
      raise records.RecordError(f"{where} ({ex.utt_id}): soft-label training needs scores of shape "
                                f"({num_classes},), record has {got}")
    scores = np.asarray(ex.scores, np.float32)
    return {"scores": scores, "label": np.int32(np.argmax(scores))}
  if not 0 <= ex.label < num_classes:
    raise records.RecordError(f"{where} ({ex.utt_id}): label {ex.label} is outside [0, {num_classes})")
  return {"label": np.int32(ex.label)}


class SampledBatches(grain.MapDataset):
  """Batch b -> (record indices, crop words) of this process's rows of global batch b (sampler.Sampler over
  `indices`: all records, or a label subset)."""

  def __init__(self, indices: np.ndarray, seed: int, global_batch: int, process_index: int = 0,
               process_count: int = 1):
    super().__init__()
    self._indices = np.asarray(indices, np.int64)
    self._sampler = sampler.Sampler(len(self._indices), seed, global_batch, process_index, process_count)

  def __len__(self):
    return sys.maxsize // self._sampler.global_batch

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    positions, words = self._sampler(index)
    return self._indices[positions], words

  def __str__(self):
    rows = self._sampler.rows
    return (f"SampledBatches({len(self._indices)} records, rows {rows[0]}..{rows[-1] + 1} of "
            f"{self._sampler.global_batch})")


class CropBatch(grain.transforms.Map):
  """A batch of (record indices, crop words) -> float16 crops, lengths and targets, in one call: each crop
  is copied once, from the decoded record's buffer straight into the batch array."""

  def __init__(self, source, crop_frames: int, mel_bins: int, target: str, num_classes: int,
               data_dir: str = "", split: str = ""):
    self.source, self.crop_frames, self.mel_bins = source, crop_frames, mel_bins
    self.target, self.num_classes = target, num_classes
    self.data_dir, self.split = data_dir, split

  def map(self, element: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    keys, words = element
    b, t = len(keys), self.crop_frames
    words = words.tolist()
    log_mel = np.empty((b, t, self.mel_bins), np.float16)  # not zeros: only padding needs zeroing
    length = np.empty((b,), np.int32)
    label = np.empty((b,), np.int32)
    scores = np.empty((b, self.num_classes), np.float32) if self.target == "scores" else None
    for r, key in enumerate(keys.tolist()):
      # One record at a time: its buffer is freed before the next is read, so the allocator hands the same
      # memory back. Reading the whole batch at once kept 256 x ~100 KB alive, fresh pages every batch,
      # and paid a page fault per 4 KB (on this project's VMs ~4 µs each: more than the read itself).
      ex = read_example(self.source, key, self.data_dir, self.split)
      frames = ex.log_mel.shape[0]
      if ex.log_mel.shape[1] != self.mel_bins:
        raise records.RecordError(f"train record {key} ({ex.utt_id}): features have "
                                  f"{ex.log_mel.shape[1]} mel bins but the stats file has {self.mel_bins}")
      start = sampler.crop_start(words[r], frames - t + 1) if frames > t else 0
      n = min(frames, t)
      log_mel[r, :n] = ex.log_mel[start:start + n]
      if n < t:
        log_mel[r, n:] = 0
      length[r] = n
      targets = _targets(ex, self.target, self.num_classes, "train record")
      label[r] = targets["label"]
      if scores is not None:
        scores[r] = targets["scores"]
    out = {"log_mel": log_mel, "length": length}
    if scores is not None:
      out["scores"] = scores
    out["label"] = label
    return out


class HostFinish(grain.transforms.Map):
  """The float32 + mask batch on the host (`Normalizer.host`), for `on_device=False`."""

  def __init__(self, normalizer: Normalizer):
    self.normalizer = normalizer

  def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return self.normalizer.host(batch)


def train_dataset(data_dir: str, split: str, *, global_batch_size: int, crop_frames: int,
                  normalizer: Normalizer, num_classes: int, seed: int, target: str = "label",
                  subset: Sequence[int] | None = None, num_workers: int = 0,
                  worker_buffer_size: int = 2, process_index: int = 0,
                  process_count: int = 1, start_batch: int = 0, on_device: bool = False) -> grain.IterDataset:
  """Infinite shuffled batches: this process's `global_batch_size // process_count` rows of each global
  batch, which is the same for any number of processes. `start_batch` skips to a global batch index (every
  element is a function of its index, so this equals iterating that far). `on_device=True`: batches hold
  float16 `log_mel` and int32 `length`, to be finished by `normalizer.device` in the step; else float32
  normalised `log_mel` and `mask`."""
  if global_batch_size % process_count:
    raise ValueError(f"global batch {global_batch_size} is not divisible by {process_count} processes")
  source = open_source(data_dir, split)
  indices = np.arange(len(source)) if subset is None else np.asarray(subset)
  if len(indices) == 0:
    raise records.RecordError(f"{data_dir}: split {split!r} has no training records")
  ds = SampledBatches(indices, seed, global_batch_size, process_index, process_count)
  ds = ds.map(CropBatch(source, crop_frames, normalizer.mel_bins, target, num_classes, data_dir, split))
  if not on_device:
    ds = ds.map(HostFinish(normalizer))
  if start_batch:
    ds = ds[start_batch:]
  return iterate(ds, num_workers, worker_buffer_size)


def iterate(ds: grain.MapDataset, num_workers: int, worker_buffer_size: int) -> grain.IterDataset:
  """The iterator every pipeline here ends in: a read thread, then `num_workers` worker processes. One
  thread builds batches ahead while the step runs; a second only contended for the GIL (~20% more CPU time
  per example and a lower rate, benchmarks/README.md). Its iterators close themselves when they raise
  (`ClosedOnError`)."""
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=4))
  if num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                     per_worker_buffer_size=worker_buffer_size))
  return ClosedOnError(it)


class ClosedOnError(grain.IterDataset):
  """`parent`, whose iterator closes the whole Grain iterator (its threads and worker processes) in the
  thread that gets an error, before the error goes on.

  Left open, a pipeline with worker processes is closed at interpreter exit by two callers at once: each
  worker's iterator has a multiprocessing finalizer that closes it (main thread), and its thread-prefetch
  thread, reading the worker that failed, stops it too. Grain 0.2.18's `_stop_prefetch` is not safe against
  that (`self._prefetch_process.is_alive()` after the other caller set it to None), so the error was
  followed by an unrelated `AttributeError: 'NoneType' object has no attribute 'is_alive'`. Closed here, in
  order (the interleave's iterators, each thread-prefetch joining its thread before its worker is stopped),
  every later close finds nothing left to stop."""

  def __init__(self, parent: grain.IterDataset):
    super().__init__(parent)

  def __iter__(self) -> grain.DatasetIterator:
    return _ClosingIterator(self._parent.__iter__())

  def __str__(self):
    return "ClosedOnError"


class _ClosingIterator(grain.DatasetIterator):
  """The iterator of `ClosedOnError`: the parent's elements and state; closed, once, on its first error."""

  def __init__(self, parent: grain.DatasetIterator):
    super().__init__(parent)

  def __next__(self):
    try:
      return next(self._parent)
    except StopIteration:
      raise
    except BaseException:
      self.close()  # DatasetIterator.close: once, then every parent in turn
      raise

  def get_state(self):
    return self._parent.get_state()

  def set_state(self, state):
    self._parent.set_state(state)

  def __str__(self):
    return "ClosedOnError"


# ---------------------------------------------------------------------------------------------------
# Evaluation.


@dataclasses.dataclass
class EvalSet:
  """This process's slice of an evaluation split: record indices, labels and windows."""
  data_dir: str
  split: str
  indices: np.ndarray  # record index in the split, per local utterance
  utt_ids: list[str]
  labels: np.ndarray  # int32 [num_local_utterances]
  windows: list[tuple[int, int]]  # (local utterance, start frame)
  crop_frames: int
  speakers: list[str] = dataclasses.field(default_factory=list)  # per local utterance ("" when unknown)

  def num_batches(self, batch_size: int) -> int:
    return windows_lib.num_batches(len(self.windows), batch_size)


def make_eval_set(data_dir: str, split: str, *, crop_frames: int, hop_frames: int,
                  num_classes: int, target: str = "label", subset: Sequence[int] | None = None,
                  process_index: int = 0, process_count: int = 1) -> EvalSet:
  """Reads this process's records once to lay out windows (lengths and labels only are kept)."""
  source = open_source(data_dir, split)
  indices = np.arange(len(source)) if subset is None else np.asarray(subset)
  local = indices[process_index::process_count]
  utt_ids, labels, windows, speakers = [], [], [], []
  for u, i in enumerate(local.tolist()):  # one record at a time, as CropBatch reads (its buffer is reused)
    ex = read_example(source, i, data_dir, split)
    if records.non_finite_float16(ex.log_mel):
      path, index = locate(data_dir, split, i)
      raise records.RecordError(f"{path}: record {index} ({ex.utt_id}, record {i} of split {split!r}) holds "
                                f"{records.non_finite_float16(ex.log_mel)} NaN or infinite log-mel values; "
                                f"{records.REWRITE}")
    labels.append(_targets(ex, target, num_classes, f"{split} record {i}")["label"])
    utt_ids.append(ex.utt_id)
    speakers.append(ex.speaker_id)
    windows.extend((u, s) for s in windows_lib.window_starts(ex.log_mel.shape[0], crop_frames, hop_frames))
  return EvalSet(data_dir, split, np.asarray(local), utt_ids, np.asarray(labels, np.int32), windows,
                 crop_frames, speakers)


class EvalBatch(grain.transforms.Map):
  """Batch index -> its windows as float16 crops + lengths, `utt` (-1: padding) and `weight`. Windows of an
  utterance are consecutive, so each record is read and decoded once per batch it has windows in."""

  def __init__(self, eval_set: EvalSet, batch_size: int, mel_bins: int):
    self.source = open_source(eval_set.data_dir, eval_set.split)
    self.data_dir, self.split = eval_set.data_dir, eval_set.split
    self.where = f"{eval_set.data_dir}:{eval_set.split}"
    self.indices = eval_set.indices
    windows = np.asarray(eval_set.windows, np.int64).reshape(-1, 2)
    self.utt, self.start = windows[:, 0], windows[:, 1]
    self.batch_size, self.crop_frames, self.mel_bins = batch_size, eval_set.crop_frames, mel_bins

  def map(self, b: int) -> dict[str, np.ndarray]:
    bs = self.batch_size
    utt, start = self.utt[b * bs:(b + 1) * bs], self.start[b * bs:(b + 1) * bs]
    mels = {}
    for u in np.unique(utt).tolist():
      key = int(self.indices[u])
      m = read_example(self.source, key, self.data_dir, self.split).log_mel
      if m.shape[1] != self.mel_bins:
        raise records.RecordError(f"{self.where}[{key}]: features have {m.shape[1]} mel bins but the stats "
                                  f"file has {self.mel_bins}")
      mels[u] = m
    return windows_lib.fill_batch(mels, utt, start, bs, self.crop_frames, self.mel_bins)


def eval_dataset(eval_set: EvalSet, batch_size: int, normalizer: Normalizer, num_batches: int | None = None,
                 *, on_device: bool = False, num_workers: int = 0,
                 worker_buffer_size: int = 2) -> grain.IterDataset:
  """Fixed-size window batches as a Grain dataset; `weight` 0 marks padding. `num_batches` pads with empty
  batches so that every process runs the same number of steps (multi-host)."""
  num_batches = eval_set.num_batches(batch_size) if num_batches is None else num_batches
  ds = grain.MapDataset.range(num_batches).map(EvalBatch(eval_set, batch_size, normalizer.mel_bins))
  if not on_device:
    ds = ds.map(HostFinish(normalizer))
  return iterate(ds, num_workers, worker_buffer_size)


def eval_batches(eval_set: EvalSet, batch_size: int, normalizer: Normalizer,
                 num_batches: int | None = None, **options) -> Iterator[dict[str, np.ndarray]]:
  """Iterates `eval_dataset` (same arguments) and stops its worker processes at the end."""
  it = iter(eval_dataset(eval_set, batch_size, normalizer, num_batches, **options))
  try:
    yield from it
  finally:
    close = getattr(it, "close", None)
    if close:
      close()


def average_window_logits(eval_set: EvalSet, utt: np.ndarray, logits: np.ndarray) -> np.ndarray:
  """Mean logits per local utterance from per-window rows (rows with utt == -1 are padding)."""
  return windows_lib.average(utt, logits, len(eval_set.utt_ids), eval_set.utt_ids)
