r"""Checks that the EmoBox adapter reads a checkout's fold files exactly: keys, labels and folds.

  lanser-emobox-check --emobox_dir=/src/EmoBox --datasets=ravdess,emodb,msppodcast [--json=check.json]
  (or python -m lanser_jax.tools.emobox_check ...)

For each corpus, a scratch tree (a temporary folder) gets an empty file at every `wav` path the lists name,
so the adapter finds "audio" without the corpus being downloaded; then lanser_jax/corpora/emobox.py reads the
checkout (rows and, per fold, the train/validation/test assignment) and the result is compared with the
fold files parsed here on their own (json.loads per line, EmoBox's label_map.json applied as its recipes do):
per fold, the set of test keys, of train keys, of valid keys (where EmoBox has a valid list) and every key's
label must be equal. Prints one line per corpus and fold and exits 1 on any difference. Nothing is copied
anywhere but the scratch folder, which is removed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any, Sequence

from absl import flags

from lanser_jax.corpora import emobox
from lanser_jax.utils import cli

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_EMOBOX_DIR = flags.DEFINE_string("emobox_dir", None, "An EmoBox checkout (or its data/ folder).", flag_values=FLAGS)
_DATASETS = flags.DEFINE_list("datasets", ["ravdess", "emodb", "msppodcast"], "EmoBox corpora to check.",
                              flag_values=FLAGS)
_JSON = flags.DEFINE_string("json", None, "Also write the results here.", flag_values=FLAGS)
flags.mark_flags_as_required(["emobox_dir"], flag_values=FLAGS)


def independent_lists(emobox_dir: str, dataset: str) -> tuple[dict, dict]:
  """({fold: {list name: {key: label}}}, {key: wav}) read with json.loads alone."""
  root = os.path.join(emobox.data_dir(emobox_dir), dataset)
  names = None
  for name in ("label_map.json", "label_dict.json"):
    if os.path.isfile(os.path.join(root, name)):
      with open(os.path.join(root, name), encoding="utf-8") as f:
        names = json.load(f)
      break
  lists, wavs = {}, {}
  for fold_dir in sorted(os.listdir(root)):
    if not fold_dir.startswith("fold_"):
      continue
    k = int(fold_dir[5:])
    lists[k] = {}
    for lst in ("train", "valid", "test"):
      path = os.path.join(root, fold_dir, f"{dataset}_{lst}_fold_{k}.jsonl")
      if not os.path.isfile(path):
        continue
      with open(path, encoding="utf-8") as f:
        entries = [json.loads(line) for line in f if line.strip()]
      lists[k][lst] = {e["key"]: _name(names, e["emo"]) for e in entries}
      wavs.update({e["key"]: e["wav"] for e in entries})
  return lists, wavs


def _name(names: dict | None, emo: str) -> str:
  """EmoBox's map applied, ignoring case only where the exact code is missing (EmoDB's 'neutral')."""
  if names is None or emo in names:
    return names[emo] if names else emo
  return {k.lower(): v for k, v in names.items()}[emo.lower()]


def check(emobox_dir: str, dataset: str) -> list[dict[str, Any]]:
  """One result per fold: counts, and whether keys and labels are equal."""
  lists, wavs = independent_lists(emobox_dir, dataset)
  out = []
  with tempfile.TemporaryDirectory(prefix="emobox_check_") as audio_root:
    for wav in set(wavs.values()):
      path = os.path.join(audio_root, wav)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      open(path, "wb").close()
    rows = [r for r in emobox.rows(emobox_dir, dataset, audio_root=audio_root) if hasattr(r, "label")]
    labels = {r.utt_id: r.label for r in rows}
    for k, by_list in lists.items():
      split = emobox.assignment(rows, dataset, k, emobox_dir)
      ours = {s: {u for u, v in split.items() if v == s} for s in ("train", "validation", "test")}
      theirs = {emobox.LISTS[lst]: set(keys) for lst, keys in by_list.items()}
      result = {"dataset": dataset, "fold": k, "lists": {lst: len(keys) for lst, keys in by_list.items()}}
      result["test_equal"] = ours["test"] == theirs["test"]
      if "validation" in theirs:
        result["train_equal"] = ours["train"] == theirs["train"]
        result["valid_equal"] = ours["validation"] == theirs["validation"]
      else:  # validation is drawn from EmoBox's train list: together they must be that list
        result["train_equal"] = (ours["train"] | ours["validation"]) == theirs["train"]
      listed = {u: lab for keys in by_list.values() for u, lab in keys.items()}
      result["labels_equal"] = all(labels.get(u) == lab for u, lab in listed.items())
      result["ok"] = all(v for key, v in result.items() if key.endswith("_equal"))
      out.append(result)
  return out


def main(argv: Sequence[str]) -> int:
  del argv
  results = []
  for dataset in _DATASETS.value:
    for r in check(_EMOBOX_DIR.value, dataset):
      results.append(r)
      print(f"{r['dataset']:12s} fold {r['fold']}: lists {r['lists']}  "
            + " ".join(f"{k}={v}" for k, v in r.items() if k.endswith("_equal")) + ("" if r["ok"] else "  DIFFERS"))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=1)
  bad = [r for r in results if not r["ok"]]
  print(f"{len(results) - len(bad)} of {len(results)} folds equal", file=sys.stderr)
  return 1 if bad else 0


def run():
  """The `lanser-emobox-check` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
