import numpy as np

from lanser_jax import metrics


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
