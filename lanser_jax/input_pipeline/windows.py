"""Whole-utterance windowing, the one implementation that evaluation (pipeline.eval_batches) and serving
(lanser_jax.serving.classifier.Classifier) share: where an utterance's windows start, how a fixed-size batch of
windows is filled, and how per-window outputs are averaged back to utterances.

Because both paths lay out and fill windows here, and the model sees the same float16 crops + lengths
(normalised inside the jitted step by `pipeline.Normalizer.device`), a record evaluated during training and
the same record served by `lanser_jax.load(...)` give the same logits (tests/input_pipeline/test_windows.py).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def window_starts(frames: int, window: int, hop: int) -> list[int]:
  """Window starts that cover all `frames`; the last window ends at the utterance's end."""
  if frames <= window:
    return [0]
  starts = list(range(0, frames - window, hop))
  starts.append(frames - window)
  return starts


def layout(lengths: Sequence[int], window: int, hop: int) -> list[tuple[int, int]]:
  """(utterance, start frame) of every window, utterance by utterance: an utterance's windows are
  consecutive, so a batch reads each utterance once."""
  return [(u, s) for u, frames in enumerate(lengths) for s in window_starts(int(frames), window, hop)]


def num_batches(num_windows: int, batch_size: int) -> int:
  return -(-num_windows // batch_size)


def fill_batch(mels: Mapping[int, np.ndarray], utt: np.ndarray, start: np.ndarray, batch_size: int,
               window: int, mel_bins: int, dtype=np.float16) -> dict[str, np.ndarray]:
  """The batch of windows (utt[r], start[r]) of the log-mels `mels[utt]`: `log_mel` [batch, window, bins]
  crops (zero after a short utterance's end) in `dtype` (the records' float16), `length` (real frames),
  `utt` (-1: a padding row) and `weight` (0: padding). Rows past len(utt) are padding, so every batch has
  one shape and nothing recompiles."""
  batch = {"log_mel": np.zeros((batch_size, window, mel_bins), dtype),
           "length": np.zeros((batch_size,), np.int32),
           "utt": np.full((batch_size,), -1, np.int32),
           "weight": np.zeros((batch_size,), np.float32)}
  for r, (u, s) in enumerate(zip(utt, start)):
    crop = mels[int(u)][s:s + window]
    batch["log_mel"][r, :len(crop)] = crop
    batch["length"][r] = len(crop)
  batch["utt"][:len(utt)] = utt
  batch["weight"][:len(utt)] = 1.0
  return batch


def average(utt: np.ndarray, values: np.ndarray, num_utterances: int,
            utt_ids: Sequence[str] | None = None) -> np.ndarray:
  """Mean of per-window rows per utterance (rows with utt == -1 are padding), summed in float64 and
  returned as float32 [num_utterances, dim]. An utterance without a window is an error naming it."""
  utt = np.asarray(utt)
  keep = utt >= 0
  sums = np.zeros((num_utterances, values.shape[1]), np.float64)
  np.add.at(sums, utt[keep], values[keep])
  counts = np.bincount(utt[keep], minlength=num_utterances)
  if np.any(counts == 0):
    missing = np.flatnonzero(counts == 0)[:5]
    names = [utt_ids[i] for i in missing] if utt_ids is not None else [int(i) for i in missing]
    raise RuntimeError(f"evaluation saw no window of utterances {names}")
  return (sums / counts[:, None]).astype(np.float32)
