"""Stratified, seeded, nested label subsets for label-efficiency experiments.

For a seed, each class's records are put in one random order and a fraction f keeps the first ceil(f * n_c)
of them (at least one), so the 10% subset lies inside the 20% subset, and so on: runs at different fractions
differ only in how many labels they see, not in which. Records without a label (-1, records.NO_LABEL) are no
class: they are never drawn, and their presence does not change which labelled records are.
"""

from __future__ import annotations

import math

import numpy as np

from lanser_jax.input_pipeline import records


def nested_stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """Sorted record indices of the subset."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  keep = []
  for c in np.unique(labels[labels >= 0]):  # sorted classes: the same rng stream at every fraction
    members = np.flatnonzero(labels == c)
    order = members[rng.permutation(len(members))]
    keep.append(order[:max(1, math.ceil(fraction * len(members)))])
  return np.sort(np.concatenate(keep)) if keep else np.zeros((0,), np.int64)


def split_labels(data_dir: str, split: str) -> np.ndarray:
  """The hard label of every record of a split, in record order."""
  from lanser_jax.input_pipeline import pipeline  # local import: pipeline imports grain, this module need not
  source = pipeline.open_source(data_dir, split)
  return np.asarray([records.decode(source[i], where=f"{data_dir}:{split}[{i}]").label
                     for i in range(len(source))], np.int64)
