"""Any EmoBox corpus through EmoBox's own fold files: the manifest adapter "emobox" and its fold protocol.

EmoBox (github.com/emo-box/EmoBox) publishes, for each of its corpora, fold lists in its checkout's data/:

  data/<dataset>/fold_<K>/<dataset>_{train,valid,test}_fold_<K>.jsonl   (valid only where the corpus has one)

one JSON line per utterance: {"key", "wav", "emo", "length", "sample_rate", ...}, `wav` relative to the folder
that holds EmoBox's `downloads/` (e.g. "downloads/ravdess/audio/.../03-01-07-02-02-02-11.wav"). These files
are read from the user's checkout; the project ships none of them.

Manifest (adapter "emobox", arguments emobox_dir, dataset, audio_root): one row per key listed in any fold
file: utt_id = key, label = EmoBox's label name (its data/<dataset>/label_map.json applied to `emo`, as its
recipes do, a code differing from the map's only in case included; `emo` itself where the corpus has no map,
or with emobox_labels=False), audio = audio_root/wav,
speaker from the key where
the corpus names it (SPEAKER_PATTERNS; "" elsewhere), extra = dataset, emo, length, sample_rate. A key listed with
two different labels or files, a line without key/wav/emo, or a missing audio file is a rejected row with its
reason; a run in which no audio file exists stops with one line naming the first expected path.

Protocol (features.protocol = {corpus: "emobox", dataset, fold, emobox_dir, seed, valid_ratio}): fold K's
train list -> train, test list -> test, valid list -> validation; where EmoBox has no valid list, validation
is a seeded, label-stratified `valid_ratio` of the train list's utterances (as for IEMOCAP and CREMA-D in
protocols.py). Rows fold K does not list get split "" (left out, counted by the features stage).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterator

from lanser_jax.corpora import manifests
from lanser_jax.utils import fileio

LISTS = {"train": "train", "valid": "validation", "test": "test"}  # EmoBox list name -> our split
_FOLD_DIR = re.compile(r"^fold_(\d+)$")

# Speaker (or actor) of an utterance, read from EmoBox's key, for the corpora whose file names carry it.
SPEAKER_PATTERNS = {
    "ravdess": (r"-(\d{2})$", "Actor_{0}"),
    "emodb": (r"^emodb-(\d{2})", "{0}"),
    "cremad": (r"^cremad-(\d{4})-", "{0}"),
    "iemocap": (r"^iemocap-(Ses\d{2})\w*_([FM])\d{3}$", "{0}{1}"),
    "savee": (r"^savee-([A-Z]{2})-", "{0}"),
    "tess": (r"^tess-([A-Z]{3})-", "{0}"),
    "esd": (r"^esd-(\d{4})-", "{0}"),
    "casia": (r"^casia-\d+-([a-z]+)-", "{0}"),
    "jlcorpus": (r"^jlcorpus-((?:fe)?male\d)-", "{0}"),
    "emovo": (r"^emovo-\w+-([fm]\d)-", "{0}"),
}


def data_dir(emobox_dir: str) -> str:
  """EmoBox's data/ folder: `emobox_dir` itself, or its data/ when it is the checkout's root."""
  if not emobox_dir:
    raise manifests.CorpusError("EmoBox: set emobox_dir to the data/ folder of an EmoBox checkout "
                                "(git clone https://github.com/emo-box/EmoBox)")
  inner = os.path.join(emobox_dir, "data")
  return inner if fileio.exists(inner) and not fileio.exists(os.path.join(emobox_dir, "iemocap")) else emobox_dir


def datasets(emobox_dir: str) -> list[str]:
  """The corpora of an EmoBox checkout: the folders of data/ that hold fold_K folders."""
  root = data_dir(emobox_dir)
  if not os.path.isdir(root):
    return []
  return sorted(d for d in os.listdir(root)
                if os.path.isdir(os.path.join(root, d)) and any(_FOLD_DIR.match(f) for f in os.listdir(
                    os.path.join(root, d))))


def fold_files(emobox_dir: str, dataset: str) -> dict[int, dict[str, str]]:
  """{fold: {"train": path, "test": path[, "valid": path]}} of one corpus; a missing list is named."""
  root = os.path.join(data_dir(emobox_dir), dataset)
  if not os.path.isdir(root):
    raise manifests.CorpusError(f"{root}: no EmoBox corpus {dataset!r}; the corpora under "
                                f"{data_dir(emobox_dir)} are {datasets(emobox_dir)}")
  out = {}
  for name in os.listdir(root):
    m = _FOLD_DIR.match(name)
    if not m:
      continue
    k = int(m[1])
    lists = {}
    for lst in LISTS:
      path = os.path.join(root, name, f"{dataset}_{lst}_fold_{k}.jsonl")
      if os.path.isfile(path):
        lists[lst] = path
    for needed in ("train", "test"):
      if needed not in lists:
        raise manifests.CorpusError(f"{os.path.join(root, name)}: no {dataset}_{needed}_fold_{k}.jsonl "
                                    "(EmoBox's fold list); is the checkout complete?")
    out[k] = lists
  if not out:
    raise manifests.CorpusError(f"{root}: no fold_K folders (expected EmoBox's data/{dataset}/fold_1/...)")
  return dict(sorted(out.items()))


def num_folds(emobox_dir: str, dataset: str) -> int:
  return len(fold_files(emobox_dir, dataset))


def read_list(path: str) -> Iterator[tuple[str, dict[str, Any] | str]]:
  """(where, entry) per line of one fold file; entry is the reason (a str) for a line that is not usable."""
  from lanser_jax.corpora import generic
  for where, d in generic._read_list(path):  # noqa: SLF001 -- the one JSONL/CSV reader of the project
    if "_bad" in d:
      yield where, f"not JSON: {d['_bad']}"
    elif not all(isinstance(d.get(k), str) and d[k] for k in ("key", "wav", "emo")):
      yield where, f"an EmoBox line needs string key, wav and emo; got keys {sorted(d)}"
    else:
      yield where, d


def label_map(emobox_dir: str, dataset: str) -> dict[str, str] | None:
  """EmoBox's own map from a list's `emo` code to its label name (data/<dataset>/label_map.json, or
  label_dict.json for EMOVO), which EmoBox's recipes apply; None when the corpus has none."""
  import json
  for name in ("label_map.json", "label_dict.json"):
    path = os.path.join(data_dir(emobox_dir), dataset, name)
    if os.path.isfile(path):
      with open(path, encoding="utf-8") as f:
        table = json.load(f)
      if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise manifests.CorpusError(f"{path}: expected a JSON object of label names")
      return table
  return None


def emobox_name(names: dict[str, str], emo: str) -> str | None:
  """EmoBox's name of `emo`: the map's entry, else the one entry equal but for case (EmoBox's EmoDB lists write
  'neutral' where its label_map.json has 'Neutral'), else None."""
  if emo in names:
    return names[emo]
  near = [v for k, v in names.items() if k.lower() == emo.lower()]
  return near[0] if len(near) == 1 else None


def speaker_of(dataset: str, key: str) -> str:
  pattern = SPEAKER_PATTERNS.get(dataset)
  if not pattern:
    return ""
  m = re.search(pattern[0], key)
  return pattern[1].format(*m.groups()) if m else ""


def default_audio_root(emobox_dir: str) -> str:
  """Where EmoBox's README puts downloads/: the checkout's root, the folder above data/."""
  return os.path.dirname(os.path.abspath(data_dir(emobox_dir)))


def rows(emobox_dir: str, dataset: str, audio_root: str = "", check_audio: bool = True, root: str = "",
         emobox_labels: bool = True) -> Iterator[manifests.Row | manifests.RejectedRow]:
  """Every utterance EmoBox lists for `dataset` (see the module docstring). `root` is accepted as a synonym
  of audio_root (the labelling configs' manifest.root)."""
  audio_root = audio_root or root or default_audio_root(emobox_dir)
  names = label_map(emobox_dir, dataset) if emobox_labels else None
  seen: dict[str, tuple[str, str]] = {}
  found = missing = 0
  first_missing = None
  for fold, lists in fold_files(emobox_dir, dataset).items():
    for path in lists.values():
      for where, d in read_list(path):
        if isinstance(d, str):
          yield manifests.RejectedRow(where, where, d)
          continue
        key, wav, emo = d["key"], d["wav"], d["emo"]
        if key in seen:
          if seen[key] != (wav, emo):
            yield manifests.RejectedRow(f"{key} ({where})", where,
                                        f"EmoBox key {key!r} listed with {(wav, emo)} here and {seen[key]} "
                                        "in an earlier list")
          continue
        seen[key] = (wav, emo)
        name = emo if names is None else emobox_name(names, emo)
        if name is None:
          yield manifests.RejectedRow(key, where, f"emo {emo!r} is not in EmoBox's label_map.json of {dataset} "
                                                  f"({sorted(names)})")
          continue
        audio = os.path.normpath(os.path.join(audio_root, wav))
        if check_audio and not os.path.exists(audio):
          missing += 1
          first_missing = first_missing or audio
          yield manifests.RejectedRow(key, audio, f"missing audio file: {audio}")
          continue
        found += 1
        yield manifests.Row(key, audio, speaker=speaker_of(dataset, key), label=name,
                            extra={"dataset": dataset, "emo": emo, "length": d.get("length"),
                                   "sample_rate": d.get("sample_rate")})
  if missing and not found:
    raise manifests.CorpusError(
        f"EmoBox {dataset}: none of the {missing} listed audio files exists (first: {first_missing}); "
        f"audio_root={audio_root!r} must be the folder holding EmoBox's downloads/ (the lists' wav paths "
        "start with downloads/<corpus>/)")


def assignment(rows_: list, dataset: str, fold: int, emobox_dir: str, seed: int = 0,
               valid_ratio: float = 0.2) -> dict[str, str]:
  """utt_id (EmoBox key) -> 'train' | 'validation' | 'test' | '' for fold `fold` of EmoBox's lists."""
  from lanser_jax.corpora import protocols
  files = fold_files(emobox_dir, dataset)
  if fold not in files:
    raise manifests.CorpusError(f"EmoBox {dataset} has folds {sorted(files)}, not fold {fold}")
  by_id = {r.utt_id: r for r in rows_ if isinstance(r, manifests.Row)}
  listed: dict[str, str] = {}
  unknown = 0
  for lst, path in files[fold].items():
    for where, d in read_list(path):
      if isinstance(d, str) or d["key"] not in by_id:
        unknown += 1
        continue
      if listed.get(d["key"], LISTS[lst]) != LISTS[lst]:
        raise manifests.CorpusError(f"{where}: {d['key']} is in two of EmoBox's lists of fold {fold}")
      listed[d["key"]] = LISTS[lst]
  if unknown:
    logging.warning("EmoBox %s fold %d: %d listed utterances have no manifest row (rejected or absent)",
                    dataset, fold, unknown)
  if "valid" not in files[fold]:
    train = sorted(u for u, s in listed.items() if s == "train")
    held = protocols.stratified_holdout(train, [by_id[u].label for u in train], valid_ratio, seed)
    listed.update({u: "validation" for u in held})
  return {u: listed.get(u, "") for u in by_id}
