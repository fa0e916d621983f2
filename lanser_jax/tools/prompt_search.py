r"""Prompt and taxonomy search: which (template, taxonomy) gives the best weak labels on a labelled corpus?

  lanser-prompt-search --config=lanser_jax/experiments/labeling/iemocap.py --templates=templates.txt \
      --taxonomies=ekman7,fine40 --eval=/data/lanser/iemocap/manifest/manifest.jsonl --out=/tmp/search \
      [--target=iemocap4] [--limit=500] [--config.labeler.model=...]
  (or python -m lanser_jax.tools.prompt_search ...)

Every candidate labels the `text` of each utterance of the --eval manifest (rows need `text` and a human
`label`; IEMOCAP's and CREMA-D's manifests carry both) with the config's labeler (model loaded once), maps the
argmax label to the target classes through taxonomies/mappings.json, and is scored by text-only UA exactly
as `baselines --kind=text_only` scores weak labels: a label the mapping leaves out counts as wrong.

--templates is a text file, one candidate per line ('#' comments and blank lines skipped); a line holding
several templates separated by ' | ' is one prompt ensemble (reduced by labeler.template_reduce).

Writes <out>/search.md (ranked table), search.json (every metric, per-class recall, cost) and search.png (a
bar plot of UA). The cost of a candidate is the (transcript, hypothesis) pairs it scored and its wall
seconds, which include compiling the length buckets it used (each candidate is a fresh labeler).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

from absl import app, flags
import numpy as np

from lanser_jax import config_lib, labelers
from lanser_jax.corpora import manifests
from lanser_jax.input_pipeline import records
from lanser_jax.tools import baselines
from lanser_jax.utils import cli, fileio

ENSEMBLE_SEPARATOR = " | "

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_CONFIG = config_lib.define_config_flag("config", "Labelling config (its labeler is used): lanser_jax/experiments/"
                                        "labeling/<file>.py[:args], then --config.key=value overrides.", FLAGS,
                                        kind="labelling config")
_TEMPLATES = flags.DEFINE_string("templates", None, "File of templates, one candidate per line.", flag_values=FLAGS)
_TAXONOMIES = flags.DEFINE_string("taxonomies", "ekman7,fine40", "Comma list: built-in names or files.",
                                  flag_values=FLAGS)
_EVAL = flags.DEFINE_string("eval", None, "Labelled manifest with transcripts (text, label).", flag_values=FLAGS)
_TARGET = flags.DEFINE_string("target", "", "Target label set (default: inferred from the labels).",
                              flag_values=FLAGS)
_LIMIT = flags.DEFINE_integer("limit", 0, "Use only the first N usable rows (0: all).", flag_values=FLAGS)
_OUT = flags.DEFINE_string("out", "search", "Output folder.", flag_values=FLAGS)
flags.mark_flags_as_required(["config", "templates", "eval"], flag_values=FLAGS)


def read_templates(path: str) -> list[tuple[str, ...]]:
  """Candidates of a templates file: one tuple of templates per non-comment line."""
  if not fileio.isfile(path):
    raise FileNotFoundError(f"--templates={path}: no such file")
  out = []
  with fileio.open(path) as f:
    for lineno, line in enumerate(f, 1):
      line = line.rstrip("\n")
      if not line.strip() or line.lstrip().startswith("#"):
        continue
      templates = tuple(t.strip() for t in line.split(ENSEMBLE_SEPARATOR))
      for t in templates:
        if "{}" not in t:
          raise ValueError(f"{path}:{lineno}: template {t!r} has no '{{}}' for the label")
      out.append(templates)
  if not out:
    raise ValueError(f"{path}: no templates")
  if len(set(out)) != len(out):
    raise ValueError(f"{path}: a candidate repeats")
  return out


def read_eval(path: str, target_labels: Sequence[str] | None, limit: int = 0
              ) -> tuple[list[str], list[str], dict[str, int]]:
  """(texts, human labels, skipped counts by reason) of the rows with text and a label in the target set."""
  texts, labels, skipped = [], [], {}
  for row in manifests.read_manifest(path, resolve=False, lenient=True):
    if isinstance(row, manifests.RejectedRow):
      why = "bad manifest line"
    elif not (row.text or "").strip():
      why = "no text"
    elif row.label is None:
      why = "no label"
    elif target_labels is not None and row.label not in target_labels:
      why = "label not in the target set"
    else:
      texts.append(row.text)
      labels.append(row.label)
      if limit and len(texts) >= limit:
        break
      continue
    skipped[why] = skipped.get(why, 0) + 1
  if not texts:
    raise ValueError(f"--eval={path}: no row with both text and a target label (skipped: {skipped})")
  return texts, labels, skipped


def infer_target(labels: Sequence[str]) -> str:
  """The smallest built-in taxonomy holding every human label of the evaluation set."""
  present = set(labels)
  fits = [n for n in labelers.BUILTIN_TAXONOMIES if present <= set(labelers.load_taxonomy(n))]
  if not fits:
    raise ValueError(f"the evaluation labels {sorted(present)} are no built-in taxonomy's: pass --target")
  return min(fits, key=lambda n: len(labelers.load_taxonomy(n)))


def mapping_table(label_names: Sequence[str], taxonomy: str, target: str) -> tuple[np.ndarray, list[str]]:
  """Target class index (or -1) of each label. Built-in taxonomies map through mappings.json; a taxonomy
  file without an entry there maps the labels that are target class names to themselves, others to none."""
  class_names = labelers.load_taxonomy(target)
  try:
    mapping = labelers.load_label_mapping(taxonomy, target)
  except KeyError:
    if taxonomy in labelers.BUILTIN_TAXONOMIES or not set(label_names) & set(class_names):
      raise
    mapping = {n: n for n in label_names if n in class_names}
  table = np.asarray([class_names.index(mapping[n]) if n in mapping else -1 for n in label_names], np.int64)
  return table, [n for n in label_names if n not in mapping]


def score_candidate(labeler, texts: Sequence[str], labels: Sequence[str], taxonomy: str,
                    target: str) -> dict[str, Any]:
  """Text-only metrics and cost of one labeler on the evaluation texts."""
  class_names = labelers.load_taxonomy(target)
  table, dropped = mapping_table(labeler.label_names, taxonomy, target)
  start = time.perf_counter()
  scores = np.asarray(labeler.score(list(texts)), np.float32)
  seconds = time.perf_counter() - start
  index, _ = labelers.weak_labels(scores)
  truth = np.asarray([class_names.index(l) for l in labels], np.int64)
  result = baselines.score(truth, table[index], class_names)
  result["labels_mapped_to_nothing"] = dropped
  distinct = len(set(texts))  # the labelers score each distinct text once
  result["cost"] = {"pairs": int(distinct * labeler.pairs_per_text), "seconds": seconds,
                    "distinct_texts": distinct}
  return result


def search(labeler_config, candidates: Sequence[tuple[str, ...]], taxonomies: Sequence[str],
           texts: Sequence[str], labels: Sequence[str], target: str,
           make: Callable | None = None, log=print) -> list[dict[str, Any]]:
  """Every (templates, taxonomy) scored; rows sorted best UA first (ties: WA, then fewer pairs).

  `make(config)` builds a labeler from a labeler config; by default the config's model is loaded once
  and shared by every candidate (labelers.make_labeler). Tests inject their own through this argument.
  """
  if make is None:
    loaded = labelers.load_model(labeler_config)
    make = lambda c: labelers.make_labeler(c, *loaded)  # noqa: E731
  rows = []
  for taxonomy in taxonomies:
    mapping_table(labelers.load_taxonomy(taxonomy), taxonomy, target)  # fails now rather than mid-search
    for templates in candidates:
      config = labeler_config.copy_and_resolve_references()
      config.taxonomy, config.templates = taxonomy, tuple(templates)
      labeler = make(config)
      metrics = score_candidate(labeler, texts, labels, taxonomy, target)
      rows.append({"templates": list(templates), "taxonomy": taxonomy, **metrics})
      log(f"[search] {taxonomy:8s} UA {metrics['ua']:.4f} WA {metrics['wa']:.4f} "
          f"{metrics['cost']['pairs']} pairs {metrics['cost']['seconds']:.1f} s  {ENSEMBLE_SEPARATOR.join(templates)}")
  rows.sort(key=lambda r: (-r["ua"], -r["wa"], r["cost"]["pairs"]))
  for rank, row in enumerate(rows, 1):
    row["rank"] = rank
  return rows


def markdown_table(rows: Sequence[dict[str, Any]], target: str, num_texts: int) -> str:
  lines = [f"Text-only weak-label accuracy on {num_texts} utterances, mapped to {target} "
           "(a label the mapping leaves out counts as wrong).", "",
           "| rank | taxonomy | template(s) | UA | WA | macro-F1 | no prediction | pairs | seconds |",
           "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    templates = ENSEMBLE_SEPARATOR.join(r["templates"]).replace("|", "\\|")
    lines.append(f"| {r['rank']} | {r['taxonomy']} | {templates} | {r['ua']:.4f} | {r['wa']:.4f} | "
                 f"{r['macro_f1']:.4f} | {r['num_without_prediction']} | {r['cost']['pairs']} | "
                 f"{r['cost']['seconds']:.1f} |")
  return "\n".join(lines) + "\n"


def bar_plot(rows: Sequence[dict[str, Any]], path: str, target: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = [f"{r['taxonomy']}: {ENSEMBLE_SEPARATOR.join(r['templates'])}"[:70] for r in rows]
  fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
  y = np.arange(len(rows))[::-1]
  ax.barh(y, [r["ua"] for r in rows], color=["C0" if r["taxonomy"] == rows[0]["taxonomy"] else "C1"
                                              for r in rows])
  for yi, r in zip(y, rows):
    ax.text(r["ua"], yi, f" {r['ua']:.3f} ({r['cost']['pairs']} pairs)", va="center", fontsize=8)
  ax.set_yticks(y, names, fontsize=8)
  ax.set_xlabel(f"text-only UA ({target})")
  ax.set_xlim(0, max(1.0, max(r["ua"] for r in rows) * 1.3))
  ax.set_title("Prompt / taxonomy search")
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, format="png", dpi=110)
  plt.close(fig)


def write_outputs(out_dir: str, rows, target: str, eval_path: str, num_texts: int, skipped) -> dict[str, str]:
  fileio.makedirs(out_dir)
  paths = {k: os.path.join(out_dir, f"search.{k}") for k in ("md", "json", "png")}
  records.write_json(paths["json"], {"eval": fileio.absolute(eval_path), "target": target,
                                     "num_texts": num_texts, "skipped": skipped, "candidates": list(rows)})
  fileio.write_text(paths["md"], markdown_table(rows, target, num_texts))
  bar_plot(rows, paths["png"], target)
  return paths


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  config = _CONFIG.value
  if config.get("offline", False):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
  candidates = read_templates(_TEMPLATES.value)
  taxonomies = [t for t in _TAXONOMIES.value.split(",") if t]
  target_labels = labelers.load_taxonomy(_TARGET.value) if _TARGET.value else None
  texts, labels, skipped = read_eval(_EVAL.value, target_labels, _LIMIT.value)
  target = _TARGET.value or infer_target(labels)
  cli.log(f"[search] {len(candidates)} template candidates x {len(taxonomies)} taxonomies on {len(texts)} "
          f"utterances (skipped {skipped}), target {target}")
  rows = search(config.labeler, candidates, taxonomies, texts, labels, target, log=cli.log)
  paths = write_outputs(_OUT.value, rows, target, _EVAL.value, len(texts), skipped)
  print(markdown_table(rows, target, len(texts)))
  print(f"wrote {paths['md']}, {paths['json']}, {paths['png']}")
  return 0


def run():
  """The `lanser-prompt-search` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
