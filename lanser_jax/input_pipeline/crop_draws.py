"""The crop starts of a whole batch at once, equal to the per-element draws Grain's `random_map` made.

The per-element pipeline (lanser_jax/input_pipeline/reference.py) drew element g's crop start with Grain's generator for
g: NumPy's Philox4x64-10 with the map's key and counter [0, 0, 0, g], then `rng.integers(0, frames - crop + 1)`.
Resetting a `Generator` and drawing once costs ~5-15 µs per element in Python; here the uint32 each
element's draw starts from is computed for a whole batch with NumPy arithmetic (`first_uint32s`: Philox's
first block for counter [1, 0, 0, g], as the generator increments its counter before it computes a block;
its low 32 bits are NumPy's first uint32), then each start from its uint32 by Lemire's bounded-integer
method as NumPy applies it to ranges below 2**32 (`bounded`). The rare draw Lemire rejects (probability
< range / 2**32) is left to NumPy's generator (`draw`), so every start is exactly NumPy's
(tests/input_pipeline/test_pipeline.py compares them).
"""

from __future__ import annotations

import numpy as np

_M = (0xD2E7470EE14C6C93, 0xCA5A826395121157)  # Philox4x64 multipliers
_W = (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)  # Weyl key increments
_ROUNDS = 10
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def _mulhilo(a: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
  """(high, low) 64-bit halves of the 128-bit products a * b (uint64 arrays, a constant b)."""
  bl, bh = np.uint64(b & 0xFFFFFFFF), np.uint64(b >> 32)
  al, ah = a & _M32, a >> _S32
  ll, lh, hl = al * bl, al * bh, ah * bl
  mid = (ll >> _S32) + (lh & _M32) + (hl & _M32)
  high = ah * bh + (lh >> _S32) + (hl >> _S32) + (mid >> _S32)
  return high, a * np.uint64(b)  # uint64 products wrap: the low half


def first_uint32s(key: tuple[int, int], elements: np.ndarray) -> np.ndarray:
  """The first uint32 NumPy's Philox generator gives at counter [0, 0, 0, element] with an empty buffer:
  the low half of word 0 of Philox4x64-10(counter [1, 0, 0, element], key). uint64 array."""
  c0 = np.ones(len(elements), np.uint64)
  c1 = np.zeros(len(elements), np.uint64)
  c2 = np.zeros(len(elements), np.uint64)
  c3 = np.asarray(elements, np.int64).astype(np.uint64)
  k0, k1 = key
  for r in range(_ROUNDS):
    if r:
      k0, k1 = (k0 + _W[0]) & 0xFFFFFFFFFFFFFFFF, (k1 + _W[1]) & 0xFFFFFFFFFFFFFFFF
    hi0, lo0 = _mulhilo(c0, _M[0])
    hi1, lo1 = _mulhilo(c2, _M[1])
    c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
  return c0 & _M32


def generator_key(seed: int) -> tuple[int, int]:
  """The Philox key of `np.random.Philox(seed)`, which Grain's random_map (and CropBatch) seed with."""
  key = np.random.Philox(seed).state["state"]["key"]
  return int(key[0]), int(key[1])


def reset_generator(rng: np.random.Generator, element: int, state: dict | None = None):
  """Puts a Philox generator where Grain's `random_map` puts it for `element` (counter [0, 0, 0, element],
  empty buffer). `state`: the generator's state dict, if already read (reading it costs as much as setting
  it)."""
  state = rng.bit_generator.state if state is None else state
  state["state"]["counter"] = np.array([0, 0, 0, element], np.uint64)
  state["buffer"] = np.zeros(4, np.uint64)
  state["buffer_pos"], state["has_uint32"], state["uinteger"] = 4, 0, 0
  rng.bit_generator.state = state


def bounded(u32: int, span: int) -> int | None:
  """NumPy's `integers(0, span)` (span <= 2**32) from its first uint32 by Lemire's method; None where
  NumPy would reject the draw and draw again (then ask the generator: `draw`)."""
  m = u32 * span
  return None if (m & 0xFFFFFFFF) < (1 << 32) % span else m >> 32


def draw(seed: int, element: int, span: int) -> int:
  """`integers(0, span)` of Grain's generator for `element`, the slow way (a generator reset)."""
  rng = np.random.Generator(np.random.Philox(seed))
  reset_generator(rng, element)
  return int(rng.integers(0, span))


def crop_starts(seed: int, elements: np.ndarray, frames: np.ndarray, crop: int) -> np.ndarray:
  """For each element (its global index) and its record's frame count: the start of its `crop`-frame
  window, `rng.integers(0, frames - crop + 1)` for Grain's generator of that element, 0 where the record
  is not longer than the crop (nothing is drawn)."""
  elements, frames = np.asarray(elements, np.int64), np.asarray(frames, np.int64)
  u32 = first_uint32s(generator_key(seed), elements)
  starts = np.zeros(len(elements), np.int64)
  for r in np.flatnonzero(frames > crop).tolist():
    span = int(frames[r]) - crop + 1
    start = bounded(int(u32[r]), span)
    starts[r] = draw(seed, int(elements[r]), span) if start is None else start
  return starts
