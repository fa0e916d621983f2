"""The training sampler: which record, and which crop of it, each row of each global batch gets, as a pure
function of (seed, batch index).

Global element g = b * B + r (row r of global batch b, of size B) lies in epoch e = g // L, at position g % L of
that epoch's order over the L records (or label-subset entries). Epoch e's order is the stable argsort of L
words of Philox4x64-10 with key `seed` and counters (i, e, 0, 0), i = 0, 1, ...: a permutation, so every record
is read exactly once per epoch whatever L is. Row r of batch b takes its crop start from word r of the counters
(i, b, 1, 0): `crop_start` maps the word's high 32 bits onto the possible starts by a multiply and a shift
(a bias below span / 2**32 for a span of possible starts).

Philox is counter-based (Salmon et al., SC'11): each word is a fixed function of key and counter, so a batch
needs nothing from the batches before it. A resumed run, a Grain worker that builds every W-th batch, and a
process that builds only its rows of the global batch all see the same numbers. Only the bit generator's raw
words are used, never a `np.random.Generator` method, whose algorithms NumPy may change between versions.

`SAMPLER` names this scheme in the training iterator's spec (`train.iterator_spec_of`), which every checkpoint
records: a checkpoint written under another order (this project's Grain-order replica before it) does not
restore its iterator state here; its data position is rebuilt from the step, in this order, with a warning.
"""

from __future__ import annotations

import threading

import numpy as np

SAMPLER = "philox-epoch-argsort/1"  # change it whenever a seed's batches change
_ORDER, _CROP = 0, 1  # the third counter word: which stream
_EPOCHS_KEPT = 2  # a batch spans at most two epochs (unless it is larger than the dataset)


def words(seed: int, index: int, stream: int, n: int) -> np.ndarray:
  """n raw uint64 words of Philox4x64-10 with key `seed` from counter (0, index, stream, 0) on (the first
  4-word block is that of counter (1, index, stream, 0): NumPy increments before each block)."""
  return np.random.Philox(key=seed % 2**64, counter=[0, index, stream, 0]).random_raw(n)


def epoch_order(num_records: int, seed: int, epoch: int) -> np.ndarray:
  """Epoch `epoch`'s permutation of range(num_records), int64. A stable sort, so that even two equal
  words (probability ~L**2 / 2**65) give the same order on every machine."""
  return np.argsort(words(seed, epoch, _ORDER, num_records), kind="stable")


def crop_start(word: int, span: int) -> int:
  """A start in [0, span) from one raw word (Python ints): its high 32 bits times span, over 2**32."""
  return ((word >> 32) * span) >> 32


class Sampler:
  """Batch index -> (positions in [0, num_records), crop words) of this process's rows of that global batch.

  A process reads rows [p * B / P, (p + 1) * B / P) of every global batch, so the global batch is the same for
  any process count P. The last epochs' orders are kept (thread-safe); a pickled copy (a Grain worker's) leaves
  them behind and computes its own."""

  def __init__(self, num_records: int, seed: int, global_batch: int, process_index: int = 0,
               process_count: int = 1):
    if num_records <= 0:
      raise ValueError(f"cannot sample from {num_records} records")
    if global_batch <= 0 or global_batch % process_count:
      raise ValueError(f"global batch {global_batch} is not a positive multiple of {process_count} processes")
    if not 0 <= process_index < process_count:
      raise ValueError(f"process index {process_index} is outside [0, {process_count})")
    self.num_records, self.seed, self.global_batch = num_records, seed, global_batch
    self.process_index, self.process_count = process_index, process_count
    local = global_batch // process_count
    self.rows = np.arange(local, dtype=np.int64) + process_index * local
    self._orders: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()

  def order(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._orders:
        if len(self._orders) >= _EPOCHS_KEPT:
          del self._orders[min(self._orders)]
        self._orders[epoch] = epoch_order(self.num_records, self.seed, epoch)
      return self._orders[epoch]

  def positions(self, batch: int) -> np.ndarray:
    """Where this process's rows of global batch `batch` sit in their epoch's order, mapped through it."""
    epochs, within = np.divmod(batch * self.global_batch + self.rows, self.num_records)
    first, last = int(epochs[0]), int(epochs[-1])
    if first == last:
      return self.order(first)[within]
    out = np.empty_like(within)
    for e in range(first, last + 1):  # a batch across an epoch boundary (or larger than the dataset)
      rows = epochs == e
      out[rows] = self.order(e)[within[rows]]
    return out

  def crop_words(self, batch: int) -> np.ndarray:
    """One raw word per row of this process (drawn for the whole global batch, so any slicing agrees)."""
    return words(self.seed, batch, _CROP, self.global_batch)[self.rows]

  def __call__(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
    return self.positions(batch), self.crop_words(batch)

  def __getstate__(self):
    return {"num_records": self.num_records, "seed": self.seed, "global_batch": self.global_batch,
            "process_index": self.process_index, "process_count": self.process_count}

  def __setstate__(self, state):
    self.__init__(**state)
