r"""Baselines of the LanSER tables, scored like training runs (a results.json with the test split's metrics).

  lanser-baselines --kind=majority  --workdir=W --data_dir=FEATURES [--label_fraction=0.1]
  lanser-baselines --kind=text_only --workdir=W --data_dir=FEATURES --labels_dir=LABELS \
      --target_set=iemocap4 [--taxonomy=fine40] [--argmax=restricted|all]
  lanser-baselines --kind=zero_shot --workdir=W --data_dir=FEATURES --pretrain=PRETRAIN_RUN \
      --target_set=iemocap4 [--taxonomy=fine40] [--step=best] [--argmax=restricted|all]
  (or python -m lanser_jax.tools.baselines ...)

majority   the most frequent class of the (subset of the) training labels, predicted for every test utterance.
text_only  the labelling stage's weak scores of each test utterance (labels/ of the target corpus labelled
           with a fine-grained taxonomy), mapped to the target classes by taxonomies/mappings.json: what the
           entailment model alone, reading Whisper transcripts, gets right.
zero_shot  the pre-trained speech model's own fine-grained prediction (no fine-tuning), window logits
           averaged per utterance, mapped to the target classes.
How a fine-grained prediction becomes a target class (--argmax; results.json reports both rules under
`by_argmax`, and the chosen one as the split's metrics):
  restricted (default)  the argmax over the fine labels that map to a target class: labels the mapping sends
                        to null (no counterpart, e.g. 'surprise' for IEMOCAP's four) cannot win, so every
                        utterance gets a prediction. This is the zero-shot rule of mapping a label set onto
                        a smaller one (the target classes are the only answers allowed).
  all                   the argmax over all fine labels; a winner that maps to nothing counts as wrong
                        (`unmapped`), which penalises the taxonomy's extra labels.
Utterances with no prediction at all (no weak label: rejected upstream) count as wrong under both rules: WA
and UA are over all test utterances, and `num_without_prediction`, `unmapped` and `mapped_only` (metrics over
the utterances that have a mapped prediction) say how much that costs.
From scratch and the linear probe are training runs: see lanser_jax/experiments/finetune_*.py (pretrained=none, probe).
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from absl import app, flags
import numpy as np

from lanser_jax.input_pipeline import records
from lanser_jax.utils import cli, fileio
from lanser_jax.engine import metrics

NO_PREDICTION = "(no prediction)"


# ---------------------------------------------------------------------------------------------------
# Scoring predictions that may be missing.


def score(labels: np.ndarray, preds: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
  """Metrics of predictions where -1 means none: counted as wrong, in an extra confusion column.

  The extra column is no class (from_confusion's num_classes), so UA and macro-F1 stay means over the real
  classes.
  """
  k = len(label_names)
  labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
  missing = preds < 0
  cm = metrics.confusion_matrix(labels, np.where(missing, k, preds), k + 1)
  result = metrics.from_confusion(cm, list(label_names) + [NO_PREDICTION], num_classes=k)
  result["num_without_prediction"] = int(missing.sum())
  result["mapped_only"] = metrics.scalars(metrics.from_confusion(
      metrics.confusion_matrix(labels[~missing], preds[~missing], k), label_names)) if (~missing).any() \
      else None
  return result


# ---------------------------------------------------------------------------------------------------
# Label names and mappings.


def infer_taxonomy(label_names: Sequence[str]) -> str:
  """The built-in taxonomy whose labels are exactly `label_names` (in order)."""
  from lanser_jax import labelers
  for name in labelers.BUILTIN_TAXONOMIES:
    if list(labelers.load_taxonomy(name)) == list(label_names):
      return name
  raise ValueError(f"labels {list(label_names)[:6]}... are no built-in taxonomy "
                   f"{labelers.BUILTIN_TAXONOMIES}: pass --taxonomy")


def target_index(target_set: str, class_names: Sequence[str]) -> dict[str, int]:
  """Target-set label -> class index of the feature folder.

  Matched by name; a name a folder spells differently (e.g. a feature folder made before the CREMA-D
  adapter used cremad6.txt's 'anger') is matched by position, only when both lists have the same length.
  """
  from lanser_jax import labelers
  target_labels = labelers.load_taxonomy(target_set)
  index = {name: i for i, name in enumerate(class_names)}
  out = {}
  for pos, name in enumerate(target_labels):
    if name in index:
      out[name] = index[name]
    elif len(target_labels) == len(class_names):
      out[name] = pos
    else:
      raise ValueError(f"target class {name!r} of {target_set} is not among the feature folder's classes "
                       f"{list(class_names)}")
  return out


def map_predictions(fine_names: Sequence[str], fine_taxonomy: str, target_set: str,
                    class_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
  """For each fine label index, the target class index or -1 (mapping leaves it out); and those labels."""
  from lanser_jax import labelers
  mapping = labelers.load_label_mapping(fine_taxonomy, target_set)
  to_class = target_index(target_set, class_names)
  table = np.asarray([to_class[mapping[n]] if n in mapping else -1 for n in fine_names], np.int64)
  return table, [n for n in fine_names if n not in mapping]


ARGMAX_RULES = ("restricted", "all")


def mapped_predictions(scores: np.ndarray, table: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{rule: (target class or -1 [N], winning fine label [N])} of fine scores [N, L] under both rules.

  restricted: argmax over the fine labels with table >= 0; all: argmax over every label, then mapped
  (-1 where the winner maps to nothing). A row of NaN (no scores) gives -1 under both; -inf entries can
  never win, so a row whose mapped labels are all -inf has no restricted prediction.
  """
  scores = np.asarray(scores, np.float64)
  if not np.any(table >= 0):
    raise ValueError("no fine label maps to a target class: check taxonomies/mappings.json")
  filled = np.where(np.isnan(scores), -np.inf, scores)
  restricted = np.where(table[None, :] >= 0, filled, -np.inf)
  out = {}
  for rule, s in (("restricted", restricted), ("all", filled)):
    fine = np.argmax(s, axis=-1)
    fine = np.where(np.isfinite(np.max(s, axis=-1)), fine, -1)
    out[rule] = (np.where(fine >= 0, table[fine], -1), fine)
  return out


def check_rule(argmax: str):
  if argmax not in ARGMAX_RULES:
    raise ValueError(f"argmax={argmax!r}: expected one of {ARGMAX_RULES}")


def split_records(data_dir: str, split: str) -> tuple[list[str], np.ndarray]:
  """utt_ids and human labels of a split, in record order."""
  from lanser_jax.input_pipeline import pipeline
  source = pipeline.open_source(data_dir, split)
  utt_ids, labels = [], []
  for i in range(len(source)):
    ex = records.decode(source[i], where=f"{data_dir}:{split}[{i}]")
    utt_ids.append(ex.utt_id)
    labels.append(ex.label)
  labels = np.asarray(labels, np.int64)
  if np.any(labels < 0):
    raise ValueError(f"{data_dir}:{split}: {int(np.sum(labels < 0))} records have no human label")
  return utt_ids, labels


# ---------------------------------------------------------------------------------------------------
# The baselines.


def majority(data_dir: str, train_split: str = "train", test_split: str = "test", label_fraction: float = 1.0,
             subset_seed: int = 0) -> dict[str, Any]:
  from lanser_jax.input_pipeline import subsets
  class_names = records.read_dataset_info(data_dir)["label_names"]
  train = subsets.split_labels(data_dir, train_split)
  if label_fraction < 1.0:
    train = train[subsets.nested_stratified_subset(train, label_fraction, subset_seed)]
  counts = np.bincount(train[train >= 0], minlength=len(class_names))
  winner = int(np.argmax(counts))  # ties: the lowest class index
  _, labels = split_records(data_dir, test_split)
  return {"baseline": "majority", "majority_class": class_names[winner],
          test_split: score(labels, np.full_like(labels, winner), class_names)}


def read_weak_labels(labels_dir: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
  """label_names.json and {utt_id: its labels-*.jsonl row (label, label_index, scores)}."""
  names_path = os.path.join(labels_dir, "label_names.json")
  if not fileio.exists(names_path):
    raise FileNotFoundError(f"{names_path}: missing; run the label stage (--stage=label) first")
  names = fileio.read_json(names_path)
  paths = fileio.glob(os.path.join(labels_dir, "labels-*.jsonl"))
  if not paths:
    raise FileNotFoundError(f"{labels_dir}: no labels-*.jsonl pieces")
  weak = {}
  for path in paths:
    with fileio.open(path) as f:
      for lineno, line in enumerate(f, 1):
        if line.strip():
          row = json.loads(line)
          if row.get("label") not in names:
            raise ValueError(f"{path}:{lineno}: label {row.get('label')!r} is not in {names_path}")
          weak[row["utt_id"]] = row
  return names, weak


def weak_score_matrix(utt_ids: Sequence[str], weak: dict[str, dict[str, Any]],
                      fine_names: Sequence[str]) -> np.ndarray:
  """[N, L] weak scores per test utterance; NaN rows where there is no weak label. A row without
  `scores` (a hand-made label file) has only its label (1, the rest -inf): both rules take it when it
  maps, and when it does not, `all` counts it unmapped and `restricted` has no prediction."""
  index = {n: i for i, n in enumerate(fine_names)}
  out = np.full((len(utt_ids), len(fine_names)), np.nan)
  for i, u in enumerate(utt_ids):
    row = weak.get(u)
    if row is None:
      continue
    if row.get("scores") is not None:
      if len(row["scores"]) != len(fine_names):
        raise ValueError(f"weak label of {u}: {len(row['scores'])} scores for {len(fine_names)} labels")
      out[i] = row["scores"]
    else:
      out[i] = -np.inf
      out[i, index[row["label"]]] = 1.0
  return out


def _both_rules(labels, scores, table, class_names, fine_names, argmax, test_split, extra=None):
  """Scores under both argmax rules; the chosen one is the split's metrics."""
  check_rule(argmax)
  by_rule = {}
  for rule, (preds, fine) in mapped_predictions(scores, table).items():
    result = score(labels, preds, class_names)
    no_prediction = int(np.sum(fine < 0))
    result["unmapped"] = int(np.sum(preds < 0)) - no_prediction
    result["unmapped_predictions"] = {n: int(np.sum(fine == i)) for i, n in enumerate(fine_names)
                                      if table[i] < 0 and np.any(fine == i)}
    result.update(extra or {})
    by_rule[rule] = result
  return {"argmax": argmax, test_split: by_rule[argmax], "by_argmax": by_rule}


def text_only(data_dir: str, labels_dir: str, target_set: str, taxonomy: str = "",
              test_split: str = "test", argmax: str = "restricted") -> dict[str, Any]:
  check_rule(argmax)
  fine_names, weak = read_weak_labels(labels_dir)
  taxonomy = taxonomy or infer_taxonomy(fine_names)
  class_names = records.read_dataset_info(data_dir)["label_names"]
  table, dropped = map_predictions(fine_names, taxonomy, target_set, class_names)
  utt_ids, labels = split_records(data_dir, test_split)
  scores = weak_score_matrix(utt_ids, weak, fine_names)
  result = _both_rules(labels, scores, table, class_names, fine_names, argmax, test_split,
                       extra={"no_weak_label": sum(u not in weak for u in utt_ids)})
  return {"baseline": "text_only", "taxonomy": taxonomy, "target_set": target_set,
          "labels_mapped_to_nothing": dropped, **result}


def zero_shot(data_dir: str, pretrain: str, target_set: str, taxonomy: str = "", test_split: str = "test",
              step: str = "best", batch_size: int = 64, argmax: str = "restricted") -> dict[str, Any]:
  """The pre-trained model's fine-grained prediction, mapped: no training on the target corpus."""
  check_rule(argmax)
  import jax
  from lanser_jax.input_pipeline import pipeline
  from lanser_jax.engine import checkpointing
  from lanser_jax import models

  config = fileio.read_json(os.path.join(pretrain, "config.json"))
  fine_names = fileio.read_json(os.path.join(pretrain, "data", "label_names.json"))
  taxonomy = taxonomy or infer_taxonomy(fine_names)
  variables = checkpointing.load_variables(checkpointing.resolve_state_path(pretrain, step))
  model = models.create_model(config["model"]["name"], len(fine_names), config["model"]["width"],
                              0.0, config["dtype"])
  # The pre-training's own normalisation: the model saw its features standardised with those statistics.
  normalizer = pipeline.Normalizer.from_file(os.path.join(pretrain, "data", "stats.json"))
  class_names = records.read_dataset_info(data_dir)["label_names"]
  eval_set = pipeline.make_eval_set(data_dir, test_split, crop_frames=config["data"]["crop_frames"],
                                    hop_frames=config["data"]["eval_hop_frames"],
                                    num_classes=len(class_names))
  apply = jax.jit(lambda v, x, m: model.apply(v, x, m, train=False)[0])
  utts, logits = [], []
  for batch in pipeline.eval_batches(eval_set, batch_size, normalizer):
    logits.append(np.asarray(apply(variables, batch["log_mel"], batch["mask"])))
    utts.append(batch["utt"])
  utt_logits = pipeline.average_window_logits(eval_set, np.concatenate(utts), np.concatenate(logits))
  table, dropped = map_predictions(fine_names, taxonomy, target_set, class_names)
  result = _both_rules(eval_set.labels, utt_logits, table, class_names, fine_names, argmax, test_split)
  return {"baseline": "zero_shot", "pretrain": fileio.absolute(pretrain), "taxonomy": taxonomy,
          "target_set": target_set, "labels_mapped_to_nothing": dropped, **result}


KINDS = {"majority": majority, "text_only": text_only, "zero_shot": zero_shot}


def run_baseline(kind: str, workdir: str, **kwargs) -> dict[str, Any]:
  """Runs one baseline and writes <workdir>/results.json (temp name, then renamed)."""
  if kind not in KINDS:
    raise ValueError(f"baseline kind {kind!r}: expected one of {sorted(KINDS)}")
  result = KINDS[kind](**kwargs)
  records.write_json(os.path.join(workdir, "results.json"), result)
  return result


# ---------------------------------------------------------------------------------------------------
# Command line.

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_KIND = flags.DEFINE_enum("kind", None, sorted(KINDS), "Which baseline.", flag_values=FLAGS)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where results.json goes.", flag_values=FLAGS)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The target corpus's feature folder (human labels).",
                                flag_values=FLAGS)
_TEST_SPLIT = flags.DEFINE_string("test_split", "test", "The split scored.", flag_values=FLAGS)
_LABEL_FRACTION = flags.DEFINE_float("label_fraction", None, "majority: of the training labels.",
                                     flag_values=FLAGS)
_SUBSET_SEED = flags.DEFINE_integer("subset_seed", None, "majority: seed of the label subset.", flag_values=FLAGS)
_LABELS_DIR = flags.DEFINE_string("labels_dir", None, "text_only: the target corpus's labels/ folder (fine "
                                  "taxonomy).", flag_values=FLAGS)
_PRETRAIN = flags.DEFINE_string("pretrain", None, "zero_shot: the pre-training run's workdir.", flag_values=FLAGS)
_STEP = flags.DEFINE_string("step", None, "zero_shot: best | latest | a step number.", flag_values=FLAGS)
_TARGET_SET = flags.DEFINE_string("target_set", None, "text_only, zero_shot: iemocap4 | cremad6 | ekman7.",
                                  flag_values=FLAGS)
_TAXONOMY = flags.DEFINE_string("taxonomy", None, "Fine taxonomy of the weak labels (default: inferred from the "
                                "names).", flag_values=FLAGS)
_ARGMAX = flags.DEFINE_enum("argmax", None, ARGMAX_RULES, "text_only, zero_shot: restricted (default: over the "
                            "labels that map) | all.", flag_values=FLAGS)
flags.mark_flags_as_required(["kind", "workdir", "data_dir"], flag_values=FLAGS)
# The keyword arguments of the baseline functions, passed on when given.
_KWARGS = (_DATA_DIR, _TEST_SPLIT, _LABEL_FRACTION, _SUBSET_SEED, _LABELS_DIR, _PRETRAIN, _STEP, _TARGET_SET,
           _TAXONOMY, _ARGMAX)


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  kind, workdir = _KIND.value, _WORKDIR.value
  kwargs = {f.name: f.value for f in _KWARGS if f.value is not None}
  result = run_baseline(kind, workdir, **kwargs)
  test = result[kwargs.get("test_split", "test")]
  for rule, t in (result.get("by_argmax") or {"": test}).items():
    print(f"{kind}{f' (argmax {rule})' if rule else ''}: WA {t['wa']:.4f} UA {t['ua']:.4f} macro-F1 "
          f"{t['macro_f1']:.4f} over {t['num_examples']} utterances, {t['num_without_prediction']} without "
          f"a prediction")
  print(f"wrote {os.path.join(workdir, 'results.json')}")
  return 0


def run():
  """The `lanser-baselines` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
