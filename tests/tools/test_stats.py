"""Intervals and paired tests (lanser_jax/tools/stats.py) against direct computations and known cases."""

import numpy as np
import pytest

from lanser_jax.engine import metrics
from lanser_jax.tools import stats


def fake_run(labels, preds, fold=0, seed=0, ids=None, speakers=None):
  ids = ids if ids is not None else [f"u{i:04d}" for i in range(len(labels))]
  result = {"predictions": {"utt_ids": ids, "pred": list(map(int, preds)), "label": list(map(int, labels))}}
  if speakers is not None:
    result["predictions"]["speaker"] = list(speakers)
  return stats.run_of(result, fold, seed)


def noisy_preds(rng, labels, accuracy, num_classes):
  wrong = (labels + rng.integers(1, num_classes, len(labels))) % num_classes
  return np.where(rng.random(len(labels)) < accuracy, labels, wrong)


def test_t_quantiles_match_scipy():
  scipy_stats = pytest.importorskip("scipy.stats")
  for df in (1, 2, 3, 10, 30, 31, 60, 200):
    assert stats.t975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=2e-3)


def test_seed_summary():
  s = stats.seed_summary([0.5, 0.6, 0.7])
  assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1)
  half = 4.303 * 0.1 / np.sqrt(3)
  assert s["ci"] == pytest.approx([0.6 - half, 0.6 + half])
  assert stats.seed_summary([0.4])["ci"] is None and stats.seed_summary([])["n"] == 0


def test_metric_of_equals_the_confusion_matrix_figures():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 97)
  labels[labels == 3] = 2  # a class absent from the truth is left out of UA, as metrics does
  preds = rng.integers(0, 4, 97)
  run = fake_run(labels, preds, ids=[f"x{i}" for i in rng.permutation(97)])  # order of ids does not matter
  ref = metrics.from_confusion(metrics.confusion_matrix(labels, preds, 4))
  assert stats.metric_of(run, "ua") == pytest.approx(ref["ua"])
  assert stats.metric_of(run, "wa") == pytest.approx(ref["wa"])


def test_utterance_interval_covers_the_mean_and_narrows_with_more_utterances():
  rng = np.random.default_rng(1)
  widths = []
  for n in (100, 1600):
    labels = rng.integers(0, 4, n)
    runs = [fake_run(labels, noisy_preds(rng, labels, 0.7, 4), seed=s) for s in range(3)]
    lo, hi = stats.utterance_interval(runs)
    mean = np.mean([stats.metric_of(r) for r in runs])
    assert lo < mean < hi
    widths.append(hi - lo)
  assert widths[1] < widths[0] / 2.5  # ~ 1/sqrt(n): 4x narrower for 16x the utterances


def test_paired_comparison_finds_a_real_difference_and_not_a_null_one():
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 6, 300)
  good = [fake_run(labels, noisy_preds(rng, labels, 0.85, 6), fold=f, seed=s) for f in (1, 2) for s in range(3)]
  bad = [fake_run(labels, noisy_preds(rng, labels, 0.60, 6), fold=f, seed=s) for f in (1, 2) for s in range(3)]
  c = stats.paired_comparison(good, bad)
  assert c["num_pairs"] == 6 and c["significant"] and c["ci"][0] > 0.15 and c["p_value"] < 0.01
  assert c["diff"] == pytest.approx(np.mean([stats.metric_of(g) - stats.metric_of(b) for g, b in zip(good, bad)]))
  same = stats.paired_comparison(good, good)
  assert same["diff"] == 0 and same["ci"] == [0, 0] and not same["significant"] and same["p_value"] == 1
  twin = [fake_run(labels, noisy_preds(rng, labels, 0.85, 6), fold=f, seed=s) for f in (1, 2) for s in range(3)]
  null = stats.paired_comparison(good, twin)  # same accuracy, different errors
  assert null["ci"][0] < 0 < null["ci"][1] and not null["significant"] and null["p_value"] > 0.05
  assert "no significant difference" in stats.describe(null, "a", "b")
  assert stats.describe(c, "pre-trained", "scratch").startswith("pre-trained is significantly better")


def test_paired_comparison_calibration_under_the_null():
  """Two recipes of equal accuracy: the 95% interval excludes 0 in about 5% of experiments, not 30%."""
  rng = np.random.default_rng(3)
  rejections = 0
  for trial in range(60):
    labels = rng.integers(0, 4, 150)
    a = [fake_run(labels, noisy_preds(rng, labels, 0.7, 4), seed=s) for s in range(3)]
    b = [fake_run(labels, noisy_preds(rng, labels, 0.7, 4), seed=s) for s in range(3)]
    rejections += stats.paired_comparison(a, b, draws=400, seed=trial)["significant"]
  assert rejections <= 9  # 60 trials at 5%: expected 3; 9 or more has probability < 0.3%


def test_runs_must_share_their_test_utterances():
  labels = np.arange(10) % 3
  a = fake_run(labels, labels, seed=0)
  b = fake_run(labels, labels, seed=1, ids=[f"v{i}" for i in range(10)])
  with pytest.raises(ValueError, match="fold 0: seed 1 was tested on other utterances"):
    stats.utterance_interval([a, b])
  with pytest.raises(ValueError, match="different utterances"):
    stats.paired_comparison([a], [fake_run(labels, labels, seed=0, ids=[f"v{i}" for i in range(10)])])
  assert stats.paired_comparison([a], [fake_run(labels, labels, seed=5)]) is None  # no pair
  assert stats.run_of({"ua": 0.5}) is None  # an old results.json without predictions


def test_speaker_bootstrap_with_one_utterance_per_speaker_is_the_utterance_bootstrap():
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 4, 120)
  speakers = [f"s{i:04d}" for i in range(120)]  # one utterance each, sorted as the utterance ids
  a = [fake_run(labels, noisy_preds(rng, labels, 0.8, 4), seed=k, speakers=speakers) for k in range(3)]
  b = [fake_run(labels, noisy_preds(rng, labels, 0.6, 4), seed=k, speakers=speakers) for k in range(3)]
  assert stats.utterance_interval(a, unit="speaker") == stats.utterance_interval(a)
  by_speaker, by_utt = stats.paired_comparison(a, b, unit="speaker"), stats.paired_comparison(a, b)
  assert by_speaker["unit"] == "speaker" and by_utt["unit"] == "utterance"
  assert by_speaker["ci"] == by_utt["ci"] and by_speaker["p_value"] == by_utt["p_value"]


def test_speaker_interval_covers_the_truth_when_utterances_cluster_by_speaker():
  """Accuracy differs by speaker (as it does between voices): over repeated test sets of 8 speakers the
  speaker bootstrap's 95% interval covers the population accuracy far more often than the utterance one,
  which treats 800 correlated utterances as independent (expected coverage ~0.85 vs ~0.45)."""
  rng = np.random.default_rng(5)
  covered = {"utterance": 0, "speaker": 0}
  trials = 60
  for trial in range(trials):
    accuracy = rng.uniform(0.4, 1.0, 8)  # population mean 0.7
    speakers = np.repeat([f"s{k}" for k in range(8)], 100)
    correct = rng.random(800) < np.repeat(accuracy, 100)
    labels = np.zeros(800, int)
    run = fake_run(labels, np.where(correct, 0, 1), speakers=speakers)
    for unit in covered:
      lo, hi = stats.utterance_interval([run], "wa", draws=400, seed=trial, unit=unit)
      covered[unit] += lo <= 0.7 <= hi
  assert covered["speaker"] >= 0.75 * trials, covered
  assert covered["speaker"] >= covered["utterance"] + 0.25 * trials, covered


def test_speaker_bootstrap_needs_named_speakers_and_enough_of_them():
  labels = np.arange(40) % 4
  four = fake_run(labels, labels, speakers=[f"s{i % 4}" for i in range(40)])
  unnamed = fake_run(labels, labels)
  blank = fake_run(labels, labels, speakers=[""] * 40)
  five = fake_run(labels, labels, speakers=[f"s{i % 5}" for i in range(40)])
  assert unnamed["speaker"] is None and blank["speaker"] is None
  for runs in ([four], [unnamed], [blank], [five, unnamed]):
    assert not stats.speakers_usable(runs) and stats.utterance_interval(runs, unit="speaker") is None
  assert stats.speakers_usable([five]) and stats.utterance_interval([five], unit="speaker") == [1.0, 1.0]
  with pytest.raises(ValueError, match="unit 'voice'"):
    stats.utterance_interval([five], unit="voice")
