"""Human label names of a corpus: mapped through the user's `label_map`, taken from the data or checked
against a declared set, so that no class is ever rejected silently.

  manifest.label_map   {corpus label: our label}; a label mapped to "" is dropped (each such row is listed in
                       the manifest's errors with the reason, and counted). Labels not in the map pass as they are.
  features.label_names the declared classes, in the order of the model's outputs; empty: the sorted labels of
                       the manifest. A declared set that misses labels of the data stops the manifest stage (and
                       the features stage) with every unexpected label and its count, and what to do about it.
"""

from __future__ import annotations

import collections
import logging
from typing import Iterable, Iterator, Mapping, Sequence

from lanser_jax.corpora import manifests

NO_LABEL = "(no label)"  # how a row without a label is named in the messages


def apply_map(rows: Iterable, label_map: Mapping[str, str] | None) -> Iterator:
  """Rows with their labels mapped; a label mapped to "" becomes a RejectedRow naming the map."""
  label_map = dict(label_map or {})
  for row in rows:
    if label_map and isinstance(row, manifests.Row) and row.label is not None and row.label in label_map:
      new = label_map[row.label]
      if not new:
        yield manifests.RejectedRow(row.utt_id, row.audio,
                                    f"label {row.label!r} dropped by manifest.label_map ({row.label!r}: '')")
        continue
      row.extra.setdefault("original_label", row.label)
      row.label = str(new)
    yield row


def counts(rows: Iterable) -> collections.Counter:
  """Rows per label over the manifest rows (RejectedRows are not counted); no label counts as NO_LABEL."""
  out: collections.Counter = collections.Counter()
  for row in rows:
    if isinstance(row, manifests.Row):
      out[NO_LABEL if row.label is None else str(row.label)] += 1
  return out


def label_names(label_counts: Mapping[str, int], declared: Sequence[str], where: str) -> list[str]:
  """The class names: `declared` when every label of the data is in it, else the sorted labels of the data.

  Raises CorpusError (one line) listing every unexpected label with its count, or the rows without a label.
  """
  declared = [str(n) for n in declared]
  if len(set(declared)) != len(declared):
    dup = sorted({n for n in declared if declared.count(n) > 1})
    raise manifests.CorpusError(f"features.label_names {declared} names {dup} twice")
  unlabelled = label_counts.get(NO_LABEL, 0)
  if unlabelled:
    raise manifests.CorpusError(
        f"{where}: {unlabelled} of {sum(label_counts.values())} rows have no label; human labels "
        "(features.label_source='human') need one on every row: fill them in, or drop those rows from the list")
  if not declared:
    if not label_counts:
      raise manifests.CorpusError(f"{where}: no labelled rows")
    return sorted(label_counts)
  unexpected = {k: v for k, v in sorted(label_counts.items()) if k not in declared}
  if unexpected:
    listed = ", ".join(f"{k!r}: {v}" for k, v in unexpected.items())
    raise manifests.CorpusError(
        f"{where}: {sum(unexpected.values())} of {sum(label_counts.values())} rows have labels outside "
        f"features.label_names {declared}: {{{listed}}}; add them to the declared labels, map them with "
        "manifest.label_map (a label mapped to '' is dropped), or declare none to take the data's labels")
  missing = [n for n in declared if n not in label_counts]
  if missing:
    # Not an error (a small corpus may lack a class), but the model keeps an output no example teaches.
    logging.warning("%s: declared labels %s have no rows", where, missing)
  return declared


def parse_list(text: str) -> list[str]:
  """'anger|happy|sad' -> ['anger', 'happy', 'sad'] (the labelling configs' `labels=` argument)."""
  return [t.strip() for t in text.split("|") if t.strip()]


def parse_map(text: str) -> dict[str, str]:
  """'ang:anger|hap:happy|xxx:' -> {'ang': 'anger', 'hap': 'happy', 'xxx': ''} (`label_map=` argument)."""
  out = {}
  for token in filter(None, (t.strip() for t in text.split("|"))):
    if ":" not in token:
      raise ValueError(f"label_map entry {token!r}: expected FROM:TO (TO empty drops the label)")
    key, _, value = token.partition(":")
    out[key.strip()] = value.strip()
  return out
