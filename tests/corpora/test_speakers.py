"""Speaker-independent protocols for any corpus (lanser_jax/corpora/speakers.py) on synthetic manifests."""

import collections

import numpy as np
import pytest

from lanser_jax.corpora import folds, manifests, speakers

LABELS = ("angry", "happy", "neutral", "sad")


def corpus(num_speakers=7, per_speaker=(6, 9, 12), seed=0):
  """Rows of speakers with different sizes and label mixes (so stratification has something to do)."""
  rng = np.random.default_rng(seed)
  rows = []
  for s in range(num_speakers):
    n = per_speaker[s % len(per_speaker)]
    weights = rng.dirichlet(np.ones(len(LABELS)))
    for j in range(n):
      label = LABELS[rng.choice(len(LABELS), p=weights)] if j >= len(LABELS) else LABELS[j]
      rows.append(manifests.Row(f"s{s}_u{j}", f"/a/s{s}_{j}.wav", speaker=f"spk{s}", label=label))
  return rows


def all_folds(rows, spec):
  n = folds.num_folds(lambda: rows, spec)
  return [speakers.assignment(rows, dict(spec, fold=k)) for k in range(1, n + 1)]


@pytest.mark.parametrize("spec", [
    {"name": "speaker_kfold", "num_folds": 3},
    {"name": "speaker_kfold", "num_folds": 5},
    {"name": "leave_one_speaker_out"},
])
def test_every_utterance_tested_exactly_once_and_speakers_never_shared(spec):
  rows = corpus()
  speaker_of = {r.utt_id: r.speaker for r in rows}
  assignments = all_folds(rows, dict(spec, corpus="any", seed=3, valid_ratio=0.2))
  if spec["name"] == "leave_one_speaker_out":
    assert len(assignments) == 7
  tested = collections.Counter(u for a in assignments for u, s in a.items() if s == "test")
  assert set(tested) == {r.utt_id for r in rows} and set(tested.values()) == {1}
  for a in assignments:
    assert set(a) == {r.utt_id for r in rows} and set(a.values()) == {"train", "validation", "test"}
    split_of_speaker = collections.defaultdict(set)
    for u, s in a.items():
      split_of_speaker[speaker_of[u]].add(s)
    assert all(len(v) == 1 for v in split_of_speaker.values()), split_of_speaker  # one split per speaker


def test_folds_are_seeded_and_label_stratified():
  rows = corpus(num_speakers=12, per_speaker=(10, 10, 10))
  spec = {"corpus": "any", "name": "speaker_kfold", "num_folds": 4, "seed": 1}
  assert all_folds(rows, spec) == all_folds(list(reversed(rows)), spec)  # order of the manifest is irrelevant
  assert all_folds(rows, spec) != all_folds(rows, dict(spec, seed=2))
  # Stratified groups spread each label across folds more evenly than random speaker groups of the same sizes.
  speaker_labels = collections.defaultdict(collections.Counter)
  for r in rows:
    speaker_labels[r.speaker][r.label] += 1

  def spread(groups):
    shares = np.array([[sum(speaker_labels[s][lab] for s in g) for lab in LABELS] for g in groups], float)
    shares /= shares.sum(0, keepdims=True)
    return float(np.sum((shares - 1 / len(groups)) ** 2))

  ours = spread(speakers.stratified_groups(dict(speaker_labels), 4, seed=1))
  rng = np.random.default_rng(0)
  names = sorted(speaker_labels)
  random_spreads = [spread(np.array_split(rng.permutation(names), 4)) for _ in range(200)]
  assert ours < np.percentile(random_spreads, 10)


def test_holdout_and_validation_are_whole_speakers_inside_training():
  rows = corpus(num_speakers=10)
  a = speakers.assignment(rows, {"name": "speaker_holdout", "test_ratio": 0.2, "valid_ratio": 0.25, "seed": 0})
  by_split = collections.defaultdict(set)
  for r in rows:
    by_split[a[r.utt_id]].add(r.speaker)
  assert len(by_split["test"]) == 2 and len(by_split["validation"]) == 2 and len(by_split["train"]) == 6
  assert not (by_split["test"] & by_split["validation"]) and not (by_split["train"] & by_split["validation"])


def test_utterance_holdout_needs_no_speakers():
  rows = [manifests.Row(f"u{i}", f"/a/{i}.wav", label=LABELS[i % 4]) for i in range(40)]
  a = speakers.assignment(rows, {"name": "utterance_holdout", "test_ratio": 0.25, "valid_ratio": 0.2})
  counts = collections.Counter(a.values())
  assert counts == {"test": 12, "validation": 4, "train": 24}  # 3 per label to test, 1 per label to validation
  assert {lab: sum(1 for r in rows if a[r.utt_id] == "test" and r.label == lab) for lab in LABELS} == {
      lab: 3 for lab in LABELS}


def test_missing_speakers_and_too_few_speakers_are_one_line_errors():
  rows = corpus(num_speakers=3)
  rows[4].speaker = ""
  with pytest.raises(manifests.CorpusError, match=r"1 of \d+ have none \(first: s0_u4\).*protocol=split"):
    speakers.assignment(rows, {"name": "speaker_kfold", "fold": 1})
  rows[4].speaker = "spk0"
  with pytest.raises(manifests.CorpusError, match="cannot make 5 speaker groups from 3 speakers"):
    speakers.assignment(rows, {"name": "speaker_kfold", "fold": 1, "num_folds": 5})
  with pytest.raises(manifests.CorpusError, match="folds 1..3, got fold 4"):
    speakers.assignment(rows, {"name": "leave_one_speaker_out", "fold": 4})
  two = [r for r in rows if r.speaker != "spk2"]
  with pytest.raises(manifests.CorpusError, match="validation by speaker needs at least 2"):
    speakers.assignment(two, {"name": "leave_one_speaker_out", "fold": 1})
