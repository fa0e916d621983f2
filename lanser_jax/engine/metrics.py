"""Classification metrics of speech emotion recognition, from a confusion matrix.

WA (weighted accuracy) is plain accuracy; UA (unweighted accuracy) is the mean per-class recall, which is what
the SER literature reports beside WA because emotion test sets are imbalanced. The conventions are
scikit-learn's, so the numbers compare with peers who compute them with it (tests/engine/test_metrics.py checks):
  UA        = balanced_accuracy_score: the mean recall over the classes present in the truth; a class with
              no true example has no recall, so it is left out (and listed in `classes_absent`), not
              counted as 0.
  macro-F1  = f1_score(average="macro") over the union of true and predicted classes: a class predicted
              but absent from the truth counts with F1 = 0 (its precision is 0), a class neither true nor
              predicted is left out.
The confusion matrix is summed over hosts before these are computed (train.evaluate), so a multi-host
evaluation gives the numbers of one host seeing every utterance.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
  """Counts [true class, predicted class]."""
  labels, preds = np.asarray(labels), np.asarray(preds)
  if labels.shape != preds.shape:
    raise ValueError(f"labels {labels.shape} and predictions {preds.shape} differ in shape")
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, preds), 1)
  return cm


def from_confusion(cm: np.ndarray, label_names: Sequence[str] | None = None,
                   num_classes: int | None = None) -> dict[str, Any]:
  """WA, UA, macro-F1 and per-class recall of a confusion matrix.

  `num_classes` < len(cm) marks the last columns as no class (baselines.score's "no prediction"):
  they count as wrong predictions but never enter UA or macro-F1 as classes of their own.
  """
  cm = np.asarray(cm, np.int64)
  k = len(cm) if num_classes is None else num_classes
  total = cm.sum()
  support = cm[:k].sum(axis=1)
  predicted = cm[:, :k].sum(axis=0)
  tp = np.diag(cm)[:k]
  present = support > 0
  in_union = present | (predicted > 0)
  recall = np.divide(tp, support, out=np.zeros(k), where=present)
  precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
  f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k),
                 where=(precision + recall) > 0)
  names = list(label_names) if label_names is not None else [str(i) for i in range(len(cm))]
  return {
      "wa": float(np.diag(cm).sum() / total) if total else 0.0,
      "ua": float(recall[present].mean()) if present.any() else 0.0,
      "macro_f1": float(f1[in_union].mean()) if in_union.any() else 0.0,
      "num_examples": int(total),
      "per_class_recall": {n: float(r) for n, r, p in zip(names, recall, present) if p},
      "classes_absent": [n for n, p in zip(names[:k], present) if not p],
      "confusion_matrix": cm.tolist(),
      "label_names": names,
  }


# The scalars every evaluation produces: what config.best_metric may name.
SCALARS = ("wa", "ua", "macro_f1")


def scalars(result: dict[str, Any]) -> dict[str, float]:
  """The scalar part of `from_confusion`, for metric writers."""
  return {k: result[k] for k in SCALARS}
