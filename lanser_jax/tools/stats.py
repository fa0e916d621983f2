"""Intervals and paired tests for results over seeds, folds and test utterances (sweeps, the demo, reports).

Every run's results.json keeps its per-utterance predictions (train.evaluate's "predictions": utt ids,
predicted and true class indices), so a number can carry both sources of its noise:
  - training noise: the spread over seeds (and label subsets, which follow the seed), summarised by the
    mean, the sample std and a t interval over runs;
  - test-set noise: which utterances happen to be in the test split, summarised by a bootstrap over test
    utterances (the same resampled utterances for every seed of a fold, so the interval is that of the
    seed-averaged figure).
Two settings (pre-trained vs scratch at one fraction) are compared with a paired, two-level bootstrap: runs
are paired by (fold, seed) (same label subset, same training seed) and scored on the same utterances; each
draw resamples the pairs of every fold and the test utterances of every fold, and recomputes the mean UA
difference. The 95% interval is the 2.5-97.5 percentiles of the draws; the p-value is the two-sided
percentile-bootstrap one (twice the smaller share of draws on either side of 0), i.e. the smallest level at
which that interval would exclude 0. A difference is called significant when the 95% interval excludes 0.
Why this test: it resamples both sources of noise (seeds and utterances), keeps the pairing that removes
what both settings share, and needs no normality of UA (a ratio of counts, bounded, per class). With three
seeds, resampling seeds sees only 10 distinct seed sets: the interval is then somewhat too narrow in its
seed part, which docs/results.md says.
Utterances of one speaker are not independent, so where the test split names its speakers (results.json's
predictions keep them) and every fold has at least MIN_SPEAKERS of them, both bootstraps can resample
speakers instead (`unit="speaker"`: each draw takes the fold's speakers with replacement, every utterance
weighted by how often its speaker was drawn): the cluster bootstrap, whose interval is the honest one when
utterances cluster by voice. With fewer speakers a bootstrap over them has too few distinct draws to mean
anything, and only the utterance interval is given.

UA is the mean recall over the classes present in the (resampled) truth, as lanser_jax/engine/metrics.py
computes it; WA is the same function with every utterance in one class.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

LEVEL = 0.95
NUM_DRAWS = 2000
MIN_SPEAKERS = 5  # per fold, for the bootstrap over speakers
UNITS = ("utterance", "speaker")

# Two-sided 95% Student t quantiles t_{0.975, df} for df = 1..30 (beyond, a Cornish-Fisher expansion).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: int) -> float:
  """The 97.5% quantile of Student's t with `df` degrees of freedom (the 95% two-sided interval's)."""
  if df < 1:
    raise ValueError(f"t quantile needs df >= 1, got {df}")
  if df <= len(_T975):
    return _T975[df - 1]
  z = 1.959964
  return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def seed_summary(values: Sequence[float]) -> dict[str, Any]:
  """Mean, sample std (ddof 1) and the 95% t interval of the mean over runs; one run has no interval."""
  v = np.asarray(values, np.float64)
  if not len(v):
    return {"n": 0, "mean": math.nan, "std": math.nan, "ci": None}
  if len(v) == 1:
    return {"n": 1, "mean": float(v[0]), "std": 0.0, "ci": None}
  std = float(v.std(ddof=1))
  half = t975(len(v) - 1) * std / math.sqrt(len(v))
  return {"n": len(v), "mean": float(v.mean()), "std": std, "ci": [float(v.mean() - half), float(v.mean() + half)]}


# ---------------------------------------------------------------------------------------------------
# Runs: per-utterance correctness, aligned within a fold.


def run_of(result: dict[str, Any], fold: Any = 0, seed: Any = 0) -> dict[str, Any] | None:
  """A run for this module from one split of results.json (None when it kept no predictions)."""
  p = result.get("predictions")
  if not p:
    return None
  order = np.argsort(np.asarray(p["utt_ids"], dtype=object).astype(str), kind="stable")
  speakers = p.get("speaker")  # absent in results.json files written before speakers were kept
  known = bool(speakers) and len(speakers) == len(order) and all(str(x) for x in speakers)
  return {"fold": str(fold), "seed": str(seed), "utt_ids": [str(p["utt_ids"][i]) for i in order],
          "correct": (np.asarray(p["pred"]) == np.asarray(p["label"]))[order].astype(np.float64),
          "label": np.asarray(p["label"], np.int64)[order],
          "speaker": [str(speakers[i]) for i in order] if known else None}


def _by_fold(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
  """Runs grouped by fold; every run of a fold must score the same utterances (the same test split)."""
  folds: dict[str, list[dict[str, Any]]] = {}
  for r in runs:
    folds.setdefault(r["fold"], []).append(r)
  for fold, rs in folds.items():
    for r in rs[1:]:
      if r["utt_ids"] != rs[0]["utt_ids"]:
        raise ValueError(f"fold {fold}: seed {r['seed']} was tested on other utterances than seed "
                         f"{rs[0]['seed']} ({len(r['utt_ids'])} vs {len(rs[0]['utt_ids'])}); runs of one fold "
                         "must share their test split")
  return folds


def _one_hot(labels: np.ndarray, metric: str) -> np.ndarray:
  if metric == "wa":
    return np.ones((len(labels), 1))
  if metric != "ua":
    raise ValueError(f"metric {metric!r}: expected 'ua' or 'wa'")
  return (labels[:, None] == np.arange(int(labels.max()) + 1)[None, :]).astype(np.float64)


def _weighted_metric(weights: np.ndarray, correct: np.ndarray, onehot: np.ndarray) -> np.ndarray:
  """[draws, runs]: UA (mean recall over the classes with weight) of each run under each utterance weighting.
  weights [draws, utts], correct [runs, utts], onehot [utts, classes]."""
  support = weights @ onehot  # [draws, classes]
  hits = np.einsum("bn,rn,nk->brk", weights, correct, onehot)
  present = support > 0
  recall = np.divide(hits, support[:, None, :], out=np.zeros_like(hits), where=present[:, None, :])
  return recall.sum(-1) / np.maximum(present.sum(-1), 1)[:, None]


def metric_of(run: dict[str, Any], metric: str = "ua") -> float:
  """UA or WA of one run, recomputed from its predictions (equals results.json's figure)."""
  w = np.ones((1, len(run["correct"])))
  return float(_weighted_metric(w, run["correct"][None], _one_hot(run["label"], metric))[0, 0])


def _utterance_weights(rng: np.random.Generator, n: int, draws: int) -> np.ndarray:
  return rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float64)


def _weights(rng: np.random.Generator, run: dict[str, Any], draws: int, unit: str) -> np.ndarray:
  """[draws, utts]: how often each test utterance is counted in each draw. `utterance`: utterances drawn
  with replacement; `speaker`: speakers drawn with replacement, each utterance counted as often as its
  speaker was drawn."""
  if unit == "utterance":
    return _utterance_weights(rng, len(run["correct"]), draws)
  if unit != "speaker":
    raise ValueError(f"unit {unit!r}: expected one of {UNITS}")
  names, of_utt = np.unique(np.asarray(run["speaker"], dtype=object).astype(str), return_inverse=True)
  return _utterance_weights(rng, len(names), draws)[:, of_utt]


def speakers_usable(runs: list[dict[str, Any]]) -> bool:
  """True when every run names the speaker of every test utterance and each fold has >= MIN_SPEAKERS."""
  return bool(runs) and all(r.get("speaker") is not None and len(set(r["speaker"])) >= MIN_SPEAKERS
                            for r in runs)


def utterance_interval(runs: list[dict[str, Any]], metric: str = "ua", draws: int = NUM_DRAWS,
                       seed: int = 0, unit: str = "utterance") -> list[float] | None:
  """95% bootstrap interval over test utterances (or, `unit="speaker"`, over test speakers) of the mean over
  runs (the seeds stay fixed). None without runs, or for speakers unless `speakers_usable(runs)`."""
  if not runs or (unit == "speaker" and not speakers_usable(runs)):
    return None
  rng = np.random.default_rng(seed)
  means, total = np.zeros(draws), 0
  for fold_runs in _by_fold(runs).values():
    correct = np.stack([r["correct"] for r in fold_runs])
    w = _weights(rng, fold_runs[0], draws, unit)
    means += _weighted_metric(w, correct, _one_hot(fold_runs[0]["label"], metric)).sum(1)
    total += len(fold_runs)
  lo, hi = np.percentile(means / total, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
  return [float(lo), float(hi)]


def paired_comparison(runs_a: list[dict[str, Any]], runs_b: list[dict[str, Any]], metric: str = "ua",
                      draws: int = NUM_DRAWS, seed: int = 0, unit: str = "utterance") -> dict[str, Any] | None:
  """A minus B: the mean difference over (fold, seed) pairs, its 95% two-level bootstrap interval (seeds, and
  test utterances or, `unit="speaker"`, test speakers) and the two-sided bootstrap p-value (module
  docstring). None when no pair has predictions on both sides."""
  b_of = {(r["fold"], r["seed"]): r for r in runs_b}
  pairs = [(a, b_of[(a["fold"], a["seed"])]) for a in runs_a if (a["fold"], a["seed"]) in b_of]
  if not pairs:
    return None
  for a, b in pairs:
    if a["utt_ids"] != b["utt_ids"]:
      raise ValueError(f"fold {a['fold']} seed {a['seed']}: the two settings were tested on different "
                       "utterances; a paired comparison needs the same test split")
  rng = np.random.default_rng(seed)
  folds: dict[str, list[tuple]] = {}
  for a, b in pairs:
    folds.setdefault(a["fold"], []).append((a, b))
  draws_sum, observed = np.zeros(draws), []
  for fold_pairs in folds.values():
    onehot = _one_hot(fold_pairs[0][0]["label"], metric)
    ca = np.stack([a["correct"] for a, _ in fold_pairs])
    cb = np.stack([b["correct"] for _, b in fold_pairs])
    n_utts, n_pairs = ca.shape[1], len(fold_pairs)
    ones = np.ones((1, n_utts))
    observed += list(_weighted_metric(ones, ca, onehot)[0] - _weighted_metric(ones, cb, onehot)[0])
    w = _weights(rng, fold_pairs[0][0], draws, unit)
    diff = _weighted_metric(w, ca, onehot) - _weighted_metric(w, cb, onehot)  # [draws, pairs]
    picks = rng.integers(0, n_pairs, size=(draws, n_pairs))  # resampled pairs (seeds) of this fold
    draws_sum += np.take_along_axis(diff, picks, axis=1).sum(1)
  boot = draws_sum / len(pairs)
  lo, hi = np.percentile(boot, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
  p = min(1.0, 2 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0))))
  return {"metric": metric, "num_pairs": len(pairs), "diff": float(np.mean(observed)),
          "ci": [float(lo), float(hi)], "p_value": p, "significant": bool(lo > 0 or hi < 0),
          "draws": draws, "unit": unit}


def p_text(comparison: dict[str, Any]) -> str:
  """'0.034', or '< 0.0005' when no draw crossed 0 (the resolution of the draws)."""
  p = comparison["p_value"]
  return f"< {1 / comparison['draws']:.4f}" if p == 0 else f"{p:.3f}"


def describe(comparison: dict[str, Any], name_a: str, name_b: str) -> str:
  """One sentence for a report: which setting is ahead, by how much, and whether that is significant."""
  d, (lo, hi) = comparison["diff"], comparison["ci"]
  p = p_text(comparison)
  figures = (f"{100 * d:+.1f} points {comparison['metric'].upper()} ({name_a} − {name_b}; 95% CI "
             f"[{100 * lo:+.1f}, {100 * hi:+.1f}], p {p if p.startswith('<') else '= ' + p}, "
             f"{comparison['num_pairs']} paired runs, test {comparison.get('unit', 'utterance')}s resampled)")
  if comparison["significant"]:
    return f"{name_a if d > 0 else name_b} is significantly better: {figures}."
  return f"no significant difference: {figures}; the interval includes 0."
