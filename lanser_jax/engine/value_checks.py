"""Checks that numbers read or computed are usable: finite arrays (records, statistics, parameters, logits,
serving outputs), the same feature settings for an `init_from` backbone and the data it is tuned on, and
the scale rule that flags serving inputs far outside the training statistics.

Each failure names the file, record or array it is about, so that a NaN never becomes a constant answer and
a backbone never meets features it was not trained on without a word.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from lanser_jax.utils import fileio


class NonFiniteValueError(ValueError):
  """An array that should hold numbers holds NaN or infinity."""


def first_non_finite(x: np.ndarray) -> tuple[int, tuple[int, ...] | None]:
  """(how many values are NaN or inf, the index of the first) of a numeric array; (0, None) when all are
  finite or the array is not of a floating type."""
  x = np.asarray(x)
  if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.complexfloating):
    return 0, None
  bad = ~np.isfinite(x)
  count = int(np.count_nonzero(bad))
  if not count:
    return 0, None
  return count, tuple(int(i) for i in np.unravel_index(int(np.argmax(bad.reshape(-1))), x.shape))


def require_finite(x: np.ndarray, what: str, advice: str = ""):
  """Raises NonFiniteValueError naming `what` (a file, record or array) when `x` holds NaN or inf."""
  count, index = first_non_finite(x)
  if count:
    value = np.asarray(x)[index] if index is not None else None
    raise NonFiniteValueError(f"{what}: {count} of {np.asarray(x).size} values are NaN or infinite "
                              f"(first at index {list(index)}: {value})" + (f"; {advice}" if advice else ""))


# ---------------------------------------------------------------------------------------------------
# init_from: the backbone's features against the new data's.


# What makes one log-mel frame (dataset.json "feature", written by audio/log_mel.LogMelOptions.to_json). Keys
# one side does not record are not compared (feature folders of other tools record fewer).
FEATURE_KEYS = ("type", "sample_rate", "window_ms", "hop_ms", "win_length", "hop_length", "n_fft",
                "num_mel_bins", "fmin", "fmax", "log_floor", "window", "center", "pad_mode", "power",
                "mel_scale", "dtype")


def run_dir_of(state_path: str) -> str | None:
  """The run folder (config.json and data/) above a checkpoint's state folder, or None."""
  here = fileio.absolute(state_path.rstrip("/"))
  for _ in range(4):  # state / <step> / checkpoints / workdir
    if fileio.exists(os.path.join(here, "data", "dataset.json")):
      return here
    here = os.path.dirname(here)
  return None


def _read_json(path: str) -> Any:
  try:
    return fileio.read_json(path)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: invalid JSON ({e}); the init_from run's files are written by lanser-train") \
        from None


def feature_differences(source: Mapping[str, Any], target: Mapping[str, Any]) -> list[str]:
  """'key: source value vs new value' for every feature setting recorded by both that differs."""
  out = []
  for key in FEATURE_KEYS:
    if key in source and key in target and source[key] != target[key]:
      a, b = source[key], target[key]
      if isinstance(a, (int, float)) and isinstance(b, (int, float)) and np.isclose(a, b, rtol=1e-6):
        continue
      out.append(f"{key} {a!r} vs {b!r}")
  return out


def check_init_from_features(state_path: str, data_dir: str, feature: Mapping[str, Any], mel_bins: int):
  """Refuses an init_from checkpoint whose run was trained on other features than `data_dir`'s: the sample
  rate, mel bins, hop, window, log floor, dtype, or the normalisation (per-bin statistics of another bin
  count). A checkpoint without its run folder (copied alone) has nothing to compare: it passes."""
  run = run_dir_of(state_path)
  if run is None:
    return
  source_info = _read_json(os.path.join(run, "data", "dataset.json"))
  source_feature = source_info.get("feature") or {}
  diffs = feature_differences(source_feature, feature)
  stats = os.path.join(run, "data", "stats.json")
  if fileio.exists(stats):
    source_bins = len(_read_json(stats).get("mean", []))
    if source_bins != mel_bins:
      diffs.append(f"normalisation statistics over {source_bins} vs {mel_bins} mel bins")
  if diffs:
    raise ValueError(
        f"config.init_from: the backbone's run {run} was trained on other features than config.data.dir "
        f"{data_dir}: " + "; ".join(diffs) + f" (from {os.path.join(run, 'data', 'dataset.json')} and "
        f"{os.path.join(data_dir, 'dataset.json')}); compute the new data's features with the source run's "
        "settings (features.* and audio.sample_rate of the labelling config)")


# ---------------------------------------------------------------------------------------------------
# Serving: inputs far outside the training statistics.


# A log-mel whose mean over frames, per mel bin, lies more than this many training standard deviations from the
# training mean, in the median over bins, is far outside what the model saw. On 10 speech clips, each against
# the statistics of the other 9 (benchmarks/scale_rule.py): as recorded 0.09-0.42, 40 dB quieter 1.4-1.5,
# exp(log_mel) 2.8-3.0, dB (10 log10) 7.6-10.2, int16 PCM read as floats 6.1-7.1.
SCALE_LIMIT_STD = 2.0


def scale_distance(log_mel: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
  """The median over mel bins of |utterance mean - training mean| / training std."""
  m = np.asarray(log_mel, np.float64).mean(axis=0)
  return float(np.median(np.abs(m - mean) / std))


def scale_warning(log_mel: np.ndarray, mean: np.ndarray, std: np.ndarray, what: str) -> str | None:
  """A warning line when `scale_distance` exceeds SCALE_LIMIT_STD, else None."""
  distance = scale_distance(log_mel, mean, std)
  if distance <= SCALE_LIMIT_STD:
    return None
  return (f"{what}: its log-mel lies {distance:.1f} training standard deviations from the training mean "
          f"(median over mel bins; more than {SCALE_LIMIT_STD:g} is far outside what the model saw): a waveform "
          "should be float samples in [-1, 1], a log-mel as the features stage computes it (log of the mel "
          "power), not exp() of it nor in dB; the prediction is unreliable")
