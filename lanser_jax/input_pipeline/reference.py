"""The per-element input pipeline that pipeline.py replaced, kept as the reference its batches are tested
against (tests/input_pipeline/test_pipeline.py) and timed against (benchmarks/input_throughput.py); training does not use it.

Training: shuffle -> repeat -> per element, decode + normalise the whole utterance in float32 + crop + pad
(a Grain `random_map`) -> batch (stacks the elements). Evaluation: a single-threaded Python loop.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import grain
import numpy as np

from lanser_jax.input_pipeline import records
from lanser_jax.input_pipeline.pipeline import EvalSet, Normalizer, _targets, crop_or_pad, iterate, open_source


class Subset(grain.sources.RandomAccessDataSource):
  """A fixed list of record indices of a source (label-fraction subsets, per-process slices)."""

  def __init__(self, source, indices: Sequence[int]):
    self._source, self._indices = source, np.asarray(indices, np.int64)

  def __len__(self):
    return len(self._indices)

  def __getitem__(self, i):
    return self._source[int(self._indices[i])]


class ProcessSlice(grain.MapDataset):
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
    return f"ProcessSlice(rows {self._offset}..{self._offset + self._local} of {self._global})"


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


def train_dataset(data_dir: str, split: str, *, global_batch_size: int, crop_frames: int,
                  normalizer: Normalizer, num_classes: int, seed: int, target: str = "label",
                  subset: Sequence[int] | None = None, num_workers: int = 0,
                  worker_buffer_size: int = 2, process_index: int = 0,
                  process_count: int = 1, start_batch: int = 0) -> grain.IterDataset:
  """Float32 normalised `log_mel` + `mask` batches, as pipeline.train_dataset(on_device=False) gives."""
  if global_batch_size % process_count:
    raise ValueError(f"global batch {global_batch_size} is not divisible by {process_count} processes")
  source = open_source(data_dir, split)
  indices = np.arange(len(source)) if subset is None else np.asarray(subset)
  ds = grain.MapDataset.source(Subset(source, indices)).shuffle(seed=seed).repeat()
  ds = ds.random_map(RandomCrop(normalizer, crop_frames, target, num_classes), seed=seed + 1)
  if process_count > 1:
    ds = ProcessSlice(ds, global_batch_size, process_index, process_count)
  ds = ds.batch(global_batch_size // process_count, drop_remainder=True)
  if start_batch:
    ds = ds[start_batch:]
  return iterate(ds, num_workers, worker_buffer_size)


def eval_batches(eval_set: EvalSet, batch_size: int, normalizer: Normalizer,
                 num_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Fixed-size window batches; `weight` 0 marks padding."""
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
