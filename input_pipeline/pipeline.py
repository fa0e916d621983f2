"""Grain input pipelines over feature shards (see records.py for the format).

Training: seeded shuffle -> repeat -> decode + random fixed-length crop + per-bin normalisation -> batch, each
JAX process reading its disjoint rows of every global batch, with worker processes prefetching. The iterator is a Grain
`DatasetIterator`, so its position is saved in checkpoints and a resumed run sees the same batches.

Evaluation: every utterance of this process's slice exactly once and whole. Utterances longer than the crop are
cut into overlapping windows; the model's logits are averaged over an utterance's windows. Batches are padded to
a fixed size (weight 0) so the last partial batch is included without a recompile.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Sequence

import grain
import numpy as np

from input_pipeline import records


def open_source(data_dir: str, split: str) -> grain.sources.ArrayRecordDataSource:
  return grain.sources.ArrayRecordDataSource(records.list_shards(data_dir, split))


def crop_or_pad(log_mel: np.ndarray, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
  """Frames [start, start+length) of `log_mel`, zero-padded at the end; mask marks real frames."""
  window = log_mel[start:start + length]
  n = window.shape[0]
  out = np.zeros((length, log_mel.shape[1]), np.float32)
  out[:n] = window
  mask = np.zeros((length,), bool)
  mask[:n] = True
  return out, mask


@dataclasses.dataclass(frozen=True)
class Normalizer:
  """Per-mel-bin standardisation; padded frames stay 0 (the mean) after it."""
  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def from_file(cls, path: str) -> "Normalizer":
    mean, std = records.read_stats(path)
    return cls(mean, std)

  def __call__(self, log_mel: np.ndarray) -> np.ndarray:
    if log_mel.shape[-1] != self.mean.shape[0]:
      raise records.RecordError(f"features have {log_mel.shape[-1]} mel bins but the stats file has "
                                f"{self.mean.shape[0]}")
    return (log_mel.astype(np.float32) - self.mean) / self.std


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


class RandomCrop(grain.transforms.RandomMap):
  """Decodes a record, takes a random `crop_frames` window (padding short ones), normalises."""

  def __init__(self, normalizer: Normalizer, crop_frames: int, target: str, num_classes: int):
    self.normalizer, self.crop_frames = normalizer, crop_frames
    self.target, self.num_classes = target, num_classes

  def random_map(self, data: bytes, rng: np.random.Generator) -> dict[str, np.ndarray]:
    ex = records.decode(data)
    frames = ex.log_mel.shape[0]
    start = int(rng.integers(0, frames - self.crop_frames + 1)) if frames > self.crop_frames else 0
    log_mel, mask = crop_or_pad(self.normalizer(ex.log_mel), start, self.crop_frames)
    return {"log_mel": log_mel, "mask": mask,
            **_targets(ex, self.target, self.num_classes, "train record")}


class _Subset(grain.sources.RandomAccessDataSource):
  """A fixed list of record indices of a source (label-fraction subsets, per-process slices)."""

  def __init__(self, source, indices: Sequence[int]):
    self._source, self._indices = source, np.asarray(indices, np.int64)

  def __len__(self):
    return len(self._indices)

  def __getitem__(self, i):
    return self._source[int(self._indices[i])]


class _ProcessSlice(grain.MapDataset):
  """This process's rows of every global batch: global element (i // b) * B + p * b + i % b for local
  element i, with b the per-process and B the global batch. Every process walks the same global order, so
  the global batch (and so training) is the same whatever the number of processes."""

  def __init__(self, parent: grain.MapDataset, global_batch: int, process_index: int, process_count: int):
    super().__init__(parent)
    self._global, self._local = global_batch, global_batch // process_count
    self._offset = process_index * self._local

  def __len__(self):
    return len(self._parent) // self._global * self._local

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    batch, row = divmod(index, self._local)
    return self._parent[batch * self._global + self._offset + row]

  def __str__(self):
    return f"_ProcessSlice(rows {self._offset}..{self._offset + self._local} of {self._global})"


def train_dataset(data_dir: str, split: str, *, global_batch_size: int, crop_frames: int,
                  normalizer: Normalizer, num_classes: int, seed: int, target: str = "label",
                  subset: Sequence[int] | None = None, num_workers: int = 0,
                  worker_buffer_size: int = 2, process_index: int = 0,
                  process_count: int = 1, start_batch: int = 0) -> grain.IterDataset:
  """Infinite shuffled batches: this process's `global_batch_size // process_count` rows of each global
  batch, which is the same for any number of processes. `start_batch` skips to a global batch index (every
  element is a function of its index, so this equals iterating that far)."""
  if global_batch_size % process_count:
    raise ValueError(f"global batch {global_batch_size} is not divisible by {process_count} processes")
  source = open_source(data_dir, split)
  indices = np.arange(len(source)) if subset is None else np.asarray(subset)
  if len(indices) == 0:
    raise records.RecordError(f"{data_dir}: split {split!r} has no training records")
  ds = grain.MapDataset.source(_Subset(source, indices)).shuffle(seed=seed).repeat()
  ds = ds.random_map(RandomCrop(normalizer, crop_frames, target, num_classes), seed=seed + 1)
  if process_count > 1:
    ds = _ProcessSlice(ds, global_batch_size, process_index, process_count)
  ds = ds.batch(global_batch_size // process_count, drop_remainder=True)
  if start_batch:
    ds = ds[start_batch:]
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
  if num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                     per_worker_buffer_size=worker_buffer_size))
  return it


# ---------------------------------------------------------------------------------------------------
# Evaluation.


def window_starts(frames: int, window: int, hop: int) -> list[int]:
  """Window starts that cover all `frames`; the last window ends at the utterance's end."""
  if frames <= window:
    return [0]
  starts = list(range(0, frames - window, hop))
  starts.append(frames - window)
  return starts


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

  def num_batches(self, batch_size: int) -> int:
    return -(-len(self.windows) // batch_size)


def make_eval_set(data_dir: str, split: str, *, crop_frames: int, hop_frames: int,
                  num_classes: int, target: str = "label", subset: Sequence[int] | None = None,
                  process_index: int = 0, process_count: int = 1) -> EvalSet:
  """Reads this process's records once to lay out windows (lengths and labels only are kept)."""
  source = open_source(data_dir, split)
  indices = np.arange(len(source)) if subset is None else np.asarray(subset)
  local = indices[process_index::process_count]
  utt_ids, labels, windows = [], [], []
  for u, i in enumerate(local):
    ex = records.decode(source[int(i)], where=f"{data_dir}:{split}[{i}]")
    labels.append(_targets(ex, target, num_classes, f"{split} record {i}")["label"])
    utt_ids.append(ex.utt_id)
    windows.extend((u, s) for s in window_starts(ex.log_mel.shape[0], crop_frames, hop_frames))
  return EvalSet(data_dir, split, np.asarray(local), utt_ids, np.asarray(labels, np.int32), windows,
                 crop_frames)


def eval_batches(eval_set: EvalSet, batch_size: int, normalizer: Normalizer,
                 num_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Fixed-size window batches; `weight` 0 marks padding. `num_batches` pads with empty batches so that
  every process runs the same number of steps (multi-host)."""
  source = open_source(eval_set.data_dir, eval_set.split)
  num_batches = eval_set.num_batches(batch_size) if num_batches is None else num_batches
  cached_u, cached = -1, None
  feat_dim = None
  for b in range(num_batches):
    chunk = eval_set.windows[b * batch_size:(b + 1) * batch_size]
    rows = []
    for u, start in chunk:
      if u != cached_u:  # windows of one utterance are consecutive: decode each record once
        cached_u = u
        cached = normalizer(records.decode(source[int(eval_set.indices[u])]).log_mel)
        feat_dim = cached.shape[1]
      rows.append(crop_or_pad(cached, start, eval_set.crop_frames) + (u,))
    if feat_dim is None:
      feat_dim = normalizer.mean.shape[0]
    batch = {"log_mel": np.zeros((batch_size, eval_set.crop_frames, feat_dim), np.float32),
             "mask": np.zeros((batch_size, eval_set.crop_frames), bool),
             "utt": np.full((batch_size,), -1, np.int32),
             "weight": np.zeros((batch_size,), np.float32)}
    for r, (log_mel, mask, u) in enumerate(rows):
      batch["log_mel"][r], batch["mask"][r], batch["utt"][r], batch["weight"][r] = log_mel, mask, u, 1.0
    yield batch


def average_window_logits(eval_set: EvalSet, utt: np.ndarray, logits: np.ndarray) -> np.ndarray:
  """Mean logits per local utterance from per-window rows (rows with utt == -1 are padding)."""
  keep = utt >= 0
  n = len(eval_set.utt_ids)
  sums = np.zeros((n, logits.shape[1]), np.float64)
  np.add.at(sums, utt[keep], logits[keep])
  counts = np.bincount(utt[keep], minlength=n)
  if np.any(counts == 0):
    missing = [eval_set.utt_ids[i] for i in np.flatnonzero(counts == 0)[:5]]
    raise RuntimeError(f"evaluation saw no window of utterances {missing}")
  return (sums / counts[:, None]).astype(np.float32)


def describe(batch: dict[str, Any]) -> str:
  return ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in batch.items())
