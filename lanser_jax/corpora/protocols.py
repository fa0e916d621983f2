"""Evaluation protocols: which split (train, validation, test) each manifest row of one fold goes to.

The manifest of a corpus is written once (its rows keep the corpus's own grouping: IEMOCAP's `sessionK`,
CREMA-D's actor split); a protocol is applied by the features stage (features.protocol), which writes one
feature folder per fold. So every protocol and fold reads the same manifest, and a fold's folder records
its protocol in dataset.json. Each protocol matches a published one:

IEMOCAP (10 speakers, two per session; speakers "Ses01F", "Ses01M", ...):
  loso         folds 1-5 (s3prl SUPERB ER: downstream/emotion/config.yaml, meta_data/SessionK): test = the
               whole held-out session, both speakers; validation = a seeded, label-stratified `valid_ratio`
               (0.2, s3prl's valid_ratio) of the four training sessions' utterances; train = the rest.
               Test folds and training pools are s3prl's exactly; the validation draw is not: s3prl draws
               `torch.manual_seed(0); random_split(train, [int(0.8 N), N - int(0.8 N)])` over its own
               file order, unstratified, while loso rounds 20% per label and draws with NumPy over the
               sorted ids (validation sizes 890/901/877/900/859 vs s3prl's 890/902/876/900/858, about a
               fifth in common, as two random draws). So the checkpoint selected differs from s3prl's
               (`dev-best.ckpt`); the test figure is comparable, not identical (docs/protocols.md).
  loso_spkval  folds 1-5, as loso but validation = one whole training speaker (speaker-disjoint checkpoint
               selection): fold K validates on Ses{K+1}F for odd K, Ses{K+1}M for even K (K+1 wraps to
               1), so the five folds validate on five different speakers of both genders.
  lospk        folds 1-10 (leave-one-speaker-out, as emotion2vec also reports): fold 2s-1 tests on
               session s's female speaker and validates on its male speaker, fold 2s the reverse; train =
               the other four sessions.
  emobox       folds 1-5: EmoBox's fold lists (data/iemocap/fold_K/iemocap_{train,test}_fold_K.jsonl of
               github.com/emo-box/EmoBox, under `emobox_dir`); EmoBox has no validation list, so
               validation = a seeded, label-stratified `valid_ratio` of its train list, as in loso.
               For IEMOCAP this is the same experiment as loso: EmoBox's folds are leave-one-session-out
               over the same 5,531 four-class utterances, so test folds, training pools and (the draw
               depending only on the pool, its labels and the seed) validation sets are loso's. It stays
               as a name to check an EmoBox checkout against the manifest (unlisted rows are counted).
CREMA-D (lanser_jax/experiments/labeling/crema_d.py, split=emobox): EmoBox's one fold (data/cremad/fold_1/...), with
  validation drawn from its train list the same way.

A manifest row a protocol places nowhere (an EmoBox list leaves it out) gets split "" and is counted as
excluded by the features stage; an EmoBox list entry without a manifest row is counted and logged.
"""

from __future__ import annotations

import collections
import logging
import os
from typing import Any, Iterable

import numpy as np

from lanser_jax.corpora import manifests
from lanser_jax.utils import fileio

IEMOCAP_PROTOCOLS = {"loso": 5, "loso_spkval": 5, "lospk": 10, "emobox": 5}  # protocol -> number of folds
EMOBOX_NAMES = {"iemocap": "iemocap", "crema_d": "cremad"}  # our corpus -> EmoBox's dataset folder name


def stratified_holdout(utt_ids: list[str], labels: list[str], ratio: float, seed: int) -> set[str]:
  """A seeded `ratio` of each label's utterances (rounded, at least one when the label has 2+).

  Utterances are sorted first, so the draw depends on the set of utterances, never on manifest order.
  """
  if not 0.0 < ratio < 1.0:
    raise ValueError(f"valid_ratio must be in (0, 1), got {ratio}")
  by_label: dict[str, list[str]] = collections.defaultdict(list)
  for u, label in sorted(zip(utt_ids, labels)):
    by_label[str(label)].append(u)
  rng = np.random.default_rng(seed)
  out: set[str] = set()
  for label in sorted(by_label):
    members = by_label[label]
    n = int(np.floor(ratio * len(members) + 0.5))
    n = max(n, 1) if len(members) > 1 else 0
    out.update(members[i] for i in rng.permutation(len(members))[:n])
  return out


def _spkval_speaker(fold: int) -> str:
  session = fold % 5 + 1
  return f"Ses{session:02d}{'F' if fold % 2 else 'M'}"


def _session(row: manifests.Row) -> int:
  if "session" in row.extra:
    return int(row.extra["session"])
  if row.speaker.startswith("Ses") and row.speaker[3:5].isdigit():
    return int(row.speaker[3:5])
  raise ValueError(f"{row.utt_id}: no IEMOCAP session (neither extra.session nor a 'SesNN' speaker)")


def iemocap_assignment(rows: Iterable[manifests.Row], protocol: str, fold: int, seed: int = 0,
                       valid_ratio: float = 0.2, emobox_dir: str = "") -> dict[str, str]:
  """utt_id -> 'train' | 'validation' | 'test' | '' (left out) for one IEMOCAP fold."""
  if protocol not in IEMOCAP_PROTOCOLS:
    raise ValueError(f"IEMOCAP protocol {protocol!r}: expected one of {sorted(IEMOCAP_PROTOCOLS)}")
  if not 1 <= fold <= IEMOCAP_PROTOCOLS[protocol]:
    raise ValueError(f"IEMOCAP protocol {protocol!r} has folds 1..{IEMOCAP_PROTOCOLS[protocol]}, got {fold}")
  rows = [r for r in rows if isinstance(r, manifests.Row)]
  if protocol == "emobox":
    return emobox_assignment(rows, "iemocap", fold, emobox_dir, seed, valid_ratio)
  out: dict[str, str] = {}
  if protocol == "lospk":
    session, gender = (fold + 1) // 2, "F" if fold % 2 else "M"
    test_speaker = f"Ses{session:02d}{gender}"
    val_speaker = f"Ses{session:02d}{'M' if gender == 'F' else 'F'}"
    for r in rows:
      out[r.utt_id] = ("test" if r.speaker == test_speaker else "validation" if r.speaker == val_speaker
                       else "train" if _session(r) != session else "")
    return out
  training = []
  for r in rows:
    if _session(r) == fold:
      out[r.utt_id] = "test"
    else:
      training.append(r)
  if protocol == "loso_spkval":
    val_speaker = _spkval_speaker(fold)
    for r in training:
      out[r.utt_id] = "validation" if r.speaker == val_speaker else "train"
    return out
  held = stratified_holdout([r.utt_id for r in training], [r.label for r in training], valid_ratio,
                            seed)
  for r in training:
    out[r.utt_id] = "validation" if r.utt_id in held else "train"
  return out


def emobox_list_paths(emobox_dir: str, corpus: str, fold: int) -> dict[str, str]:
  """{'train': path, 'test': path} of EmoBox's fold lists; a missing file is named in the error."""
  if not emobox_dir:
    raise ValueError("the emobox protocol needs emobox_dir: the `data/` folder of an EmoBox checkout "
                     "(github.com/emo-box/EmoBox), which holds "
                     "<dataset>/fold_K/<dataset>_{train,test}_fold_K.jsonl")
  name = EMOBOX_NAMES.get(corpus, corpus)
  paths = {}
  for split in ("train", "test"):
    path = os.path.join(emobox_dir, name, f"fold_{fold}", f"{name}_{split}_fold_{fold}.jsonl")
    if not fileio.exists(path):
      raise FileNotFoundError(f"{path}: EmoBox {split} list of {name} fold {fold} is missing (emobox_dir="
                              f"{emobox_dir!r} should be EmoBox's data/ folder)")
    paths[split] = path
  return paths


def read_emobox_list(path: str) -> list[dict[str, Any]]:
  """EmoBox list lines {"key", "wav", "emo", ...} via the list adapter's reader (bad lines named)."""
  from lanser_jax.corpora import generic
  out = []
  for where, d in generic._read_list(path):  # noqa: SLF001 -- the one JSONL/CSV reader of the project
    if "_bad" in d:
      raise ValueError(f"{where}: not JSON: {d['_bad']}")
    if not d.get("wav"):
      raise ValueError(f"{where}: EmoBox list line without 'wav'")
    out.append(d)
  return out


def emobox_utt_id(entry: dict[str, Any]) -> str:
  """Our utt_id of an EmoBox entry: its wav file name without extension (IEMOCAP 'Ses01F_impro01_F000',
  CREMA-D '1001_DFA_ANG_XX'), as both our adapters name utterances."""
  return os.path.splitext(os.path.basename(str(entry["wav"])))[0]


def emobox_assignment(rows: Iterable[manifests.Row], corpus: str, fold: int, emobox_dir: str,
                      seed: int = 0, valid_ratio: float = 0.2) -> dict[str, str]:
  """EmoBox's train/test lists; validation = a label-stratified `valid_ratio` of its train list."""
  rows = {r.utt_id: r for r in rows if isinstance(r, manifests.Row)}
  listed: dict[str, str] = {}
  unknown = 0
  for split, path in emobox_list_paths(emobox_dir, corpus, fold).items():
    for entry in read_emobox_list(path):
      u = emobox_utt_id(entry)
      if u not in rows:
        unknown += 1
        continue
      if u in listed and listed[u] != split:
        raise ValueError(f"{path}: {u} is in both EmoBox's train and test lists of fold {fold}")
      listed[u] = split
  if unknown:
    logging.warning("EmoBox %s fold %d: %d listed utterances have no manifest row (rejected or absent)",
                    corpus, fold, unknown)
  train = sorted(u for u, s in listed.items() if s == "train")
  held = stratified_holdout(train, [rows[u].label for u in train], valid_ratio, seed)
  out = {u: "" for u in rows}
  for u, s in listed.items():
    out[u] = "validation" if u in held else s
  return out


def assignment(rows: Iterable[manifests.Row], spec: dict[str, Any]) -> dict[str, str]:
  """utt_id -> split for features.protocol = {corpus, name, fold, seed, valid_ratio, emobox_dir}."""
  spec = dict(spec)
  corpus, name = spec.get("corpus"), spec.get("name")
  common = dict(seed=int(spec.get("seed", 0)), valid_ratio=float(spec.get("valid_ratio", 0.2)))
  from lanser_jax.corpora import emobox, speakers  # any corpus: lanser_jax/corpora/{speakers,emobox}.py
  if name in speakers.PROTOCOLS:
    return speakers.assignment(rows, spec)
  if corpus == "emobox":
    return emobox.assignment(list(rows), spec.get("dataset", ""), int(spec.get("fold", 1)),
                             spec.get("emobox_dir", ""), **common)
  if corpus == "iemocap":
    return iemocap_assignment(rows, name, int(spec["fold"]), emobox_dir=spec.get("emobox_dir", ""),
                              **common)
  if corpus == "crema_d" and name == "emobox":
    return emobox_assignment(rows, "crema_d", int(spec.get("fold", 1)), spec.get("emobox_dir", ""),
                             **common)
  raise ValueError(f"features.protocol: unknown corpus/protocol {corpus!r}/{name!r} (IEMOCAP: "
                   f"{sorted(IEMOCAP_PROTOCOLS)}; CREMA-D: emobox)")


def split_map(rows: Iterable[manifests.Row], spec: dict[str, Any]) -> dict[str, str]:
  """The assignment as features.split_map keys ('utt:<utt_id>', the features stage's split_map)."""
  return {f"utt:{u}": s for u, s in assignment(rows, spec).items()}
