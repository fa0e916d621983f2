import numpy as np
import pytest

from lanser_jax.engine import metrics


def test_wa_ua_f1_on_imbalanced_set():
  labels = np.array([0] * 8 + [1] * 2)
  preds = np.array([0] * 8 + [0, 1])
  r = metrics.from_confusion(metrics.confusion_matrix(labels, preds, 3), ["a", "b", "c"])
  assert r["wa"] == 0.9
  assert r["ua"] == (1.0 + 0.5) / 2  # class c is absent: left out, not counted as 0
  assert r["classes_absent"] == ["c"]
  f1_a = 2 * (8 / 9) * 1.0 / (8 / 9 + 1.0)
  f1_b = 2 * 1.0 * 0.5 / 1.5
  np.testing.assert_allclose(r["macro_f1"], (f1_a + f1_b) / 2)
  assert r["confusion_matrix"] == [[8, 0, 0], [1, 1, 0], [0, 0, 0]]


def test_confusion_matrix_shape_mismatch():
  try:
    metrics.confusion_matrix(np.zeros(3, int), np.zeros(4, int), 2)
  except ValueError as e:
    assert "shape" in str(e)
  else:
    raise AssertionError("expected ValueError")


# ---------------------------------------------------------------------------------------------------
# Against scikit-learn (the convention the SER literature computes with).

def _sklearn(labels, preds, k):
  sk = pytest.importorskip("sklearn.metrics")
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" is the case under test
    return {"wa": sk.accuracy_score(labels, preds), "ua": sk.balanced_accuracy_score(labels, preds),
            "macro_f1": sk.f1_score(labels, preds, average="macro", zero_division=0),
            "confusion_matrix": sk.confusion_matrix(labels, preds, labels=list(range(k))).tolist()}


CASES = {
    "random": lambda rng: (rng.integers(0, 5, 200), rng.integers(0, 5, 200), 5),
    "a class never predicted": lambda rng: (rng.integers(0, 4, 100), rng.integers(0, 3, 100), 4),
    "a class absent from the truth": lambda rng: (rng.integers(0, 3, 100), rng.integers(0, 4, 100), 4),
    "neither true nor predicted": lambda rng: (rng.integers(0, 3, 50), rng.integers(0, 3, 50), 6),
    "a single class": lambda rng: (np.zeros(20, int), np.zeros(20, int), 3),
    "one class true, others predicted": lambda rng: (np.zeros(30, int), rng.integers(0, 3, 30), 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scikit_learn(case, seed):
  labels, preds, k = CASES[case](np.random.default_rng(seed))
  ours = metrics.from_confusion(metrics.confusion_matrix(labels, preds, k))
  theirs = _sklearn(labels, preds, k)
  for key in ("wa", "ua", "macro_f1"):
    np.testing.assert_allclose(ours[key], theirs[key], atol=1e-12, err_msg=f"{case}: {key}")
  assert ours["confusion_matrix"] == theirs["confusion_matrix"]


def test_a_predicted_class_absent_from_the_truth_counts_in_macro_f1():
  r = metrics.from_confusion(metrics.confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), 3))
  # F1: class 0 = 2/3, class 1 = 1, class 2 (predicted once, never true) = 0: over the union, 3 classes.
  np.testing.assert_allclose(r["macro_f1"], (2 / 3 + 1 + 0) / 3)
  assert r["ua"] == 0.75 and r["classes_absent"] == ["2"]


def test_multihost_summed_confusion_gives_the_same_numbers(monkeypatch):
  """train.evaluate sums per-host confusion matrices (train.global_sum) before from_confusion."""
  import jax
  from jax.experimental import multihost_utils
  from lanser_jax import train
  rng = np.random.default_rng(3)
  labels, preds = rng.integers(0, 4, 301), rng.integers(0, 5, 301) % 4
  hosts = np.array_split(np.arange(301), 3)  # uneven shards, as the last host's eval batches are
  per_host = [metrics.confusion_matrix(labels[h], preds[h], 4) for h in hosts]
  monkeypatch.setattr(jax, "process_count", lambda: 3)
  monkeypatch.setattr(multihost_utils, "process_allgather", lambda x: np.stack(per_host))
  summed = metrics.from_confusion(train.global_sum(per_host[0]))
  whole = metrics.from_confusion(metrics.confusion_matrix(labels, preds, 4))
  assert summed == whole
  theirs = _sklearn(labels, preds, 4)
  for key in ("wa", "ua", "macro_f1"):
    np.testing.assert_allclose(summed[key], theirs[key], atol=1e-12)
