"""Speaker-independent protocols for any corpus whose manifest rows name their speaker.

features.protocol = {corpus: "any", name, fold, seed, valid_ratio, test_ratio, num_folds}; every protocol puts
all of a speaker's utterances in one split, and draws validation as whole speakers from the fold's training
speakers, so neither test nor checkpoint selection sees a training voice:

  speaker_holdout         one fold: test = about `test_ratio` (0.2) of the speakers.
  speaker_kfold           folds 1..num_folds (5): the speakers in num_folds label-stratified groups; fold K tests
                          on group K. Every utterance is tested in exactly one fold.
  leave_one_speaker_out   one fold per speaker (sorted): fold K tests on the K-th speaker.
  In every fold, validation = about `valid_ratio` (0.2) of the training speakers, at least one; the rest train.
  utterance_holdout       for corpora without speakers (NOT speaker-independent): one fold; test = a seeded,
                          label-stratified `test_ratio` of the utterances, validation = `valid_ratio` of the rest.

Speaker groups are label-stratified: speakers are taken largest first (ties in a seeded random order) and each
joins the group where it evens out the labels' shares best (the sum over labels of the squared deviation of the
group's share of the label from 1/groups), the group with fewest utterances on a tie. speaker_holdout is group 1
of round(1/test_ratio) such groups; validation is group 1 of round(1/valid_ratio) groups of the training speakers
(seed + fold, so folds validate on different speakers). A row without a speaker stops the run (one line).
"""

from __future__ import annotations

import collections
from typing import Any, Iterable

import numpy as np

from lanser_jax.corpora import manifests

PROTOCOLS = ("speaker_holdout", "speaker_kfold", "leave_one_speaker_out", "utterance_holdout")


def _speaker_labels(rows: list[manifests.Row]) -> dict[str, collections.Counter]:
  no_speaker = [r.utt_id for r in rows if not r.speaker]
  if no_speaker:
    raise manifests.CorpusError(
        f"speaker protocols need a speaker on every row; {len(no_speaker)} of {len(rows)} have none (first: "
        f"{no_speaker[0]}): add a speaker column to the list, or use protocol=split (the list's own split)")
  out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for r in rows:
    out[r.speaker][str(r.label)] += 1
  return dict(out)


def stratified_groups(speaker_labels: dict[str, collections.Counter], k: int, seed: int) -> list[list[str]]:
  """`k` groups of speakers whose label shares are as even as the greedy rule makes them (module docstring)."""
  speakers = sorted(speaker_labels)
  if k < 1 or k > len(speakers):
    raise manifests.CorpusError(f"cannot make {k} speaker groups from {len(speakers)} speakers")
  names = sorted({lab for c in speaker_labels.values() for lab in c})
  totals = np.array([sum(c[n] for c in speaker_labels.values()) for n in names], np.float64)
  tie = np.random.default_rng(seed).permutation(len(speakers))
  order = sorted(range(len(speakers)), key=lambda i: (-sum(speaker_labels[speakers[i]].values()), tie[i]))
  counts = np.zeros((k, len(names)))
  groups: list[list[str]] = [[] for _ in range(k)]
  for placed, i in enumerate(order):
    s = np.array([speaker_labels[speakers[i]][n] for n in names], np.float64)
    must_fill = len(order) - placed <= sum(1 for x in groups if not x)  # no group may stay empty
    best = None
    for g in range(k):
      if must_fill and groups[g]:
        continue
      shares = (counts[g] + s) / totals
      cost = float(np.sum((shares - 1.0 / k) ** 2) - np.sum((counts[g] / totals - 1.0 / k) ** 2))
      key = (round(cost, 12), counts[g].sum(), g)
      best = key if best is None or key < best else best
    g = best[2]
    counts[g] += s
    groups[g].append(speakers[i])
  return [sorted(g) for g in groups]


def num_folds(rows: Iterable, spec: dict[str, Any]) -> int:
  name = spec.get("name")
  if name in ("speaker_holdout", "utterance_holdout"):
    return 1
  if name == "speaker_kfold":
    return int(spec.get("num_folds", 5))
  if name == "leave_one_speaker_out":
    return len(_speaker_labels([r for r in rows if isinstance(r, manifests.Row)]))
  raise manifests.CorpusError(f"features.protocol.name={name!r}: expected one of {list(PROTOCOLS)}")


def _validation(training: dict[str, collections.Counter], valid_ratio: float, seed: int) -> set[str]:
  if not 0.0 < valid_ratio < 1.0:
    raise manifests.CorpusError(f"features.protocol.valid_ratio must be in (0, 1), got {valid_ratio}")
  if len(training) < 2:
    raise manifests.CorpusError(f"only {len(training)} training speaker(s) in this fold: validation by speaker "
                                "needs at least 2 (more speakers, or fewer folds)")
  k = min(len(training), max(2, int(round(1.0 / valid_ratio))))
  return set(stratified_groups(training, k, seed)[0])


def assignment(rows: Iterable, spec: dict[str, Any]) -> dict[str, str]:
  """utt_id -> 'train' | 'validation' | 'test' for fold spec['fold'] (1-based) of protocol spec['name']."""
  rows = [r for r in rows if isinstance(r, manifests.Row)]
  name, fold, seed = spec.get("name"), int(spec.get("fold", 1)), int(spec.get("seed", 0))
  if name == "utterance_holdout":
    return _utterance_holdout(rows, spec, seed)
  speaker_labels = _speaker_labels(rows)
  n = num_folds(rows, spec)
  if not 1 <= fold <= n:
    raise manifests.CorpusError(f"protocol {name} has folds 1..{n}, got fold {fold}")
  if name == "leave_one_speaker_out":
    test = {sorted(speaker_labels)[fold - 1]}
  elif name == "speaker_kfold":
    if n < 2:
      raise manifests.CorpusError(f"speaker_kfold needs num_folds >= 2, got {n}")
    test = set(stratified_groups(speaker_labels, n, seed)[fold - 1])
  else:
    test_ratio = float(spec.get("test_ratio", 0.2))
    if not 0.0 < test_ratio < 1.0:
      raise manifests.CorpusError(f"features.protocol.test_ratio must be in (0, 1), got {test_ratio}")
    test = set(stratified_groups(speaker_labels, max(2, int(round(1.0 / test_ratio))), seed)[0])
  training = {s: c for s, c in speaker_labels.items() if s not in test}
  valid = _validation(training, float(spec.get("valid_ratio", 0.2)), seed + fold)
  return {r.utt_id: "test" if r.speaker in test else "validation" if r.speaker in valid else "train"
          for r in rows}


def _utterance_holdout(rows: list[manifests.Row], spec: dict[str, Any], seed: int) -> dict[str, str]:
  from lanser_jax.corpora import protocols
  if int(spec.get("fold", 1)) != 1:
    raise manifests.CorpusError(f"utterance_holdout has one fold, got fold {spec.get('fold')}")
  ids, labs = [r.utt_id for r in rows], [str(r.label) for r in rows]
  test = protocols.stratified_holdout(ids, labs, float(spec.get("test_ratio", 0.2)), seed)
  rest = [(u, lab) for u, lab in zip(ids, labs) if u not in test]
  valid = protocols.stratified_holdout([u for u, _ in rest], [lab for _, lab in rest],
                                       float(spec.get("valid_ratio", 0.2)), seed + 1)
  return {u: "test" if u in test else "validation" if u in valid else "train" for u in ids}
