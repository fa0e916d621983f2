"""Classification metrics of speech emotion recognition, from a confusion matrix.

WA (weighted accuracy) is plain accuracy; UA (unweighted accuracy) is the mean per-class recall, which is what
the SER literature reports beside WA because emotion test sets are imbalanced. Classes absent from the
evaluation set are left out of UA and macro-F1 (and listed), rather than counted as zero recall.
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


def from_confusion(cm: np.ndarray, label_names: Sequence[str] | None = None) -> dict[str, Any]:
  cm = np.asarray(cm, np.int64)
  total = cm.sum()
  support = cm.sum(axis=1)
  predicted = cm.sum(axis=0)
  tp = np.diag(cm)
  present = support > 0
  recall = np.divide(tp, support, out=np.zeros(len(cm)), where=present)
  precision = np.divide(tp, predicted, out=np.zeros(len(cm)), where=predicted > 0)
  f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(cm)),
                 where=(precision + recall) > 0)
  names = list(label_names) if label_names is not None else [str(i) for i in range(len(cm))]
  return {
      "wa": float(tp.sum() / total) if total else 0.0,
      "ua": float(recall[present].mean()) if present.any() else 0.0,
      "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
      "num_examples": int(total),
      "per_class_recall": {n: float(r) for n, r, p in zip(names, recall, present) if p},
      "classes_absent": [n for n, p in zip(names, present) if not p],
      "confusion_matrix": cm.tolist(),
      "label_names": names,
  }


def scalars(result: dict[str, Any]) -> dict[str, float]:
  """The scalar part of `from_confusion`, for metric writers."""
  return {k: result[k] for k in ("wa", "ua", "macro_f1")}
