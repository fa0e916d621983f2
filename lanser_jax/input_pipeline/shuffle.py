"""Grain's global shuffle order (`MapDataset.shuffle(seed).repeat()`) for a whole batch of elements at once.

Grain places element g of a shuffled, repeated dataset of L records at record
`index_shuffle(g % L, max_index=L - 1, seed=(seed + g // L) % 2**32, rounds=4)` (its ShuffleMapDataset), one
C++ call per element. On this project's machines that call costs 8-30 µs (more for small datasets: the
cipher works on at least 16 bits and walks its cycle until it lands below L), as much as reading the record.
`ShuffleOrder` computes the same numbers for whole arrays of elements with NumPy: the same cipher (a
Simon-style Feistel network on a 2W-bit block, round keys from C++'s `std::seed_seq`, cycle walking), so
batches stay exactly those of Grain's shuffle (tests/input_pipeline/test_pipeline.py compares the two on many sizes and
seeds) and checkpoints of earlier runs resume at the same batch. It also keeps Grain's quirk: where
L - 1 is a power of two that fills the block exactly (2**16, 2**18, ...), the cipher drops index L - 1's top
bit, so one record is read twice per epoch and another not at all.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np

ROUNDS = 4  # what Grain's ShuffleMapDataset passes
_MIN_BLOCK_BITS = 16
_M32 = 0xFFFFFFFF


@functools.lru_cache(maxsize=64)
def round_keys(seed: int, rounds: int = ROUNDS) -> tuple[int, ...]:
  """`std::seed_seq{seed}.generate(keys, keys + rounds)`, as the C++ standard ([rand.util.seedseq]) defines
  it: the round keys of one epoch's permutation."""
  n, s, v = rounds, 1, [seed & _M32]
  b = [0x8B8B8B8B] * n
  t = 11 if n >= 623 else 7 if n >= 68 else 5 if n >= 39 else 3 if n >= 7 else (n - 1) // 2
  p = (n - t) // 2
  q = p + t
  m = max(s + 1, n)
  mix = lambda x: x ^ (x >> 27)
  for k in range(m):
    r1 = 1664525 * mix(b[k % n] ^ b[(k + p) % n] ^ b[(k - 1) % n]) & _M32
    r2 = (r1 + (s if k == 0 else (k % n) + v[k - 1] if k <= s else k % n)) & _M32
    b[(k + p) % n] = (b[(k + p) % n] + r1) & _M32
    b[(k + q) % n] = (b[(k + q) % n] + r2) & _M32
    b[k % n] = r2
  for k in range(m, m + n):
    r3 = 1566083941 * mix((b[k % n] + b[(k + p) % n] + b[(k - 1) % n]) & _M32) & _M32
    r4 = (r3 - (k % n)) & _M32
    b[(k + p) % n] ^= r3
    b[(k + q) % n] ^= r4
    b[k % n] = r4
  return tuple(b)


def _word_bits(max_index: int) -> int:
  """Half the cipher's block: ceil(log2(max_index)) in double precision as the C++ computes it, made even,
  at least 16 bits."""
  bits = int(math.ceil(math.log2(float(max_index))))
  return min(max(bits + bits % 2, _MIN_BLOCK_BITS), 64) // 2


def _encrypt(x: np.ndarray, keys: tuple[int, ...], w: int) -> np.ndarray:
  """One pass of the Feistel network over uint64 blocks of 2w bits (w <= 32)."""
  mask = np.uint64((1 << w) - 1)
  left, right = (x >> np.uint64(w)) & mask, x & mask
  rot = lambda a, r: ((a << np.uint64(r)) | (a >> np.uint64(w - r))) & mask
  f = lambda a: (rot(a, 1) & rot(a, 8)) ^ rot(a, 2)
  for i in range(0, len(keys), 2):
    left ^= f(right) ^ (np.uint64(keys[i]) & mask)
    right ^= f(left) ^ (np.uint64(keys[i + 1]) & mask)
  return (left << np.uint64(w)) | right


def index_shuffle(index: np.ndarray, max_index: int, seed: int, rounds: int = ROUNDS) -> np.ndarray:
  """Grain's `index_shuffle` for an array of indices in [0, max_index] (int64 in, int64 out)."""
  index = np.asarray(index, np.int64)
  if max_index == 0:
    return np.zeros_like(index)
  keys, w = round_keys(seed, rounds), _word_bits(max_index)
  out = index.astype(np.uint64)
  pending = np.arange(out.size)
  while pending.size:  # cycle walking: re-encrypt until the value is a valid index
    enc = _encrypt(out[pending], keys, w)
    out[pending] = enc
    pending = pending[enc > np.uint64(max_index)]
  return out.astype(np.int64)


def permutation(length: int, seed: int) -> np.ndarray:
  """`index_shuffle(arange(length), length - 1, seed)` for a cipher domain of at most 2**20 blocks: every
  block is encrypted once and the cycle walk follows that table (a gather per step instead of a pass of the
  cipher; a dataset of L records walks ~65536 / L steps)."""
  max_index = length - 1
  if max_index == 0:
    return np.zeros(1, np.int64)
  domain = 1 << (2 * _word_bits(max_index))
  if domain > _TABLE_DOMAIN:
    raise ValueError(f"{length} elements: the cipher's domain {domain} is too large for a table")
  w = _word_bits(max_index)
  table = _encrypt(np.arange(domain, dtype=np.uint64), round_keys(seed), w).astype(np.int64)
  out = table[np.arange(length) & (domain - 1)]  # the cipher drops bits above its block, as the C++ does
  pending = np.flatnonzero(out > max_index)
  while pending.size:
    out[pending] = table[out[pending]]
    pending = pending[out[pending] > max_index]
  return out


_TABLE_DOMAIN = 1 << 20
_CHUNK = 1 << 14


class ShuffleOrder:
  """Positions in [0, length) that `MapDataset.shuffle(seed).repeat()` over `length` elements reads for
  global elements: every epoch is its own permutation, seeded `seed + epoch`. Up to ~2**20 elements an
  epoch's whole order is computed at once (`permutation`); beyond, chunks of 2**14 consecutive elements
  (a pass of the cipher costs the same for 10 elements as for thousands, so a batch alone would pay it
  ~20 times over). The last few are kept; safe to call from several threads; pickles without them (Grain
  worker processes build their own)."""

  def __init__(self, length: int, seed: int):
    if length <= 0:
      raise ValueError(f"cannot shuffle {length} elements")
    self.length, self.seed = length, seed
    self._whole_epochs = length == 1 or 1 << (2 * _word_bits(length - 1)) <= _TABLE_DOMAIN
    self._cache: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()

  def _compute(self, key: int) -> np.ndarray:
    if self._whole_epochs:  # key: an epoch
      return permutation(self.length, (self.seed + key) % 2**32)
    elements = np.arange(key * _CHUNK, (key + 1) * _CHUNK, dtype=np.int64)  # key: a chunk of elements
    epoch, within = np.divmod(elements, self.length)
    out = np.empty_like(elements)
    for e in np.unique(epoch).tolist():
      rows = epoch == e
      out[rows] = index_shuffle(within[rows], self.length - 1, (self.seed + e) % 2**32)
    return out

  def _get(self, key: int) -> np.ndarray:
    with self._lock:
      if key not in self._cache:
        if len(self._cache) >= 4:  # a batch spans at most two; threads may be a little apart
          del self._cache[min(self._cache)]
        self._cache[key] = self._compute(key)
      return self._cache[key]

  def __call__(self, elements: np.ndarray) -> np.ndarray:
    elements = np.asarray(elements, np.int64)
    out = np.empty_like(elements)
    if self._whole_epochs:
      keys, offsets = np.divmod(elements, self.length)
    else:
      keys, offsets = np.divmod(elements, _CHUNK)
    for k in np.unique(keys).tolist():
      rows = keys == k
      out[rows] = self._get(k)[offsets[rows]]
    return out

  def __getstate__(self):
    return {"length": self.length, "seed": self.seed}

  def __setstate__(self, state):
    self.__init__(**state)
