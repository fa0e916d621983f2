r"""A report for any training run or sweep: Markdown plus PNG figures (`lanser-report RUN_OR_SWEEP`).

  lanser-report workdirs/my_run                   # a run: a folder with results.json (and metrics.jsonl)
  lanser-report /data/runs/my_sweep               # a sweep root (<root>/sweep.json, written by lanser-sweep)
      [--out=DIR] [--split=test] [--compare=pretrained=none]
  (or python -m lanser_jax.tools.report ...)

A run's report: the results table (each split's UA, WA, macro-F1 with the 95% bootstrap interval of UA over
its utterances, the chosen step and why), per-class recall, the confusion matrix and the training curves.
A sweep's report: the aggregate table with intervals over seeds and test utterances, the paired comparisons
(lanser_jax/tools/aggregate.py), the label-efficiency figure with bands, and for the setting chosen by mean
validation UA (never by test) its per-class recall, confusion matrix (summed over its runs) and curves.
Written to <RUN_OR_SWEEP>/report/report.md unless --out says otherwise. The demo's report uses these sections.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any

from absl import app, flags
import numpy as np

from lanser_jax.tools import aggregate as aggregate_lib
from lanser_jax.tools import stats
from lanser_jax.utils import cli, fileio

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_OUT = flags.DEFINE_string("out", None, "Output folder (default <RUN_OR_SWEEP>/report).", flag_values=FLAGS)
_SPLIT = flags.DEFINE_string("split", "test", "The split reported as the result.", flag_values=FLAGS)
_COMPARE = flags.DEFINE_string("compare", "", "Sweeps: axis=baseline_value of the paired comparisons "
                               "(default pretrained=none, else init=scratch).", flag_values=FLAGS)
RESULTS = aggregate_lib.RESULTS
SWEEP_RECORD = "sweep.json"


def _pct(x: float | None) -> str:
  return "–" if x is None or np.isnan(x) else f"{100 * x:.1f}"


# ---------------------------------------------------------------------------------------------------
# Figures.


def plot_confusion(cm: np.ndarray, names: list[str], title: str, path: str):
  """Counts, shaded by the row-normalised share (recall on the diagonal)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  cm = np.asarray(cm, float)
  norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
  width = 1.2 + 0.65 * len(names)
  fig, ax = plt.subplots(figsize=(width, 0.8 + 0.6 * len(names)))
  ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
  for i in range(len(names)):
    for j in range(len(names)):
      ax.text(j, i, f"{cm[i, j]:g}", ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
  ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
  ax.set_yticks(range(len(names)), names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  # Wrapped to the figure's width (about 11 characters per inch at 10 points), so a long title is not cut.
  ax.set_title(textwrap.fill(title, max(20, int(11 * width))), fontsize=10)
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, format="png", dpi=110)
  plt.close(fig)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, "metrics.jsonl")
  return [r for r in fileio.read_jsonl(path) if "step" in r] if fileio.exists(path) else []


def plot_curves(workdirs: dict[str, str], path: str) -> bool:
  """Training loss and accuracy and validation UA against the step, one line per run. False without metrics."""
  series = {label: read_metrics(d) for label, d in workdirs.items()}
  panels = [("train/loss", "training loss"), ("train/accuracy", "training accuracy"),
            ("validation/ua", "validation UA")]
  if not any(k in r for rows in series.values() for r in rows for k, _ in panels):
    return False
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axs = plt.subplots(1, 3, figsize=(13, 3.4))
  for ax, (key, title) in zip(axs, panels):
    for label, rows in series.items():
      pts = [(r["step"], r[key]) for r in rows if key in r]
      if pts:
        ax.plot(*zip(*pts), marker="." if key.startswith("validation") else None, label=label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  if len(series) > 1:
    axs[-1].legend(fontsize=7)
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, format="png", dpi=110)
  plt.close(fig)
  return True


# ---------------------------------------------------------------------------------------------------
# Sections.


def recall_lines(per_class: dict[str, list[float]]) -> list[str]:
  """A per-class recall table: mean (± std over runs when there are several)."""
  several = any(len(v) > 1 for v in per_class.values())
  lines = ["| class | recall (%) |", "|---|---:|"]
  for name, values in per_class.items():
    v = np.asarray(values)
    lines.append(f"| {name} | {_pct(v.mean())}" + (f" ± {_pct(v.std(ddof=1))}" if several else "") + " |")
  return lines


def run_lines(workdir: str, out_dir: str, split: str = "test", title: str = "") -> list[str]:
  """The report of one run: results table, per-class recall, confusion matrix and curves (PNGs in out_dir)."""
  results = fileio.read_json(os.path.join(workdir, RESULTS))
  splits = [s for s in ("validation", "train", split) if isinstance(results.get(s), dict) and "ua" in results[s]]
  splits = list(dict.fromkeys(splits + [s for s, v in results.items() if isinstance(v, dict) and "ua" in v]))
  if split not in splits:
    raise ValueError(f"{workdir}/{RESULTS} has no split {split!r} (it has {splits}); pass --split")
  lines = [f"# {title or 'Run report: ' + workdir}", ""]
  facts = [f"best step {results['best_step']} of {results.get('steps')}" if "best_step" in results else "",
           results.get("selection", {}).get("rule", ""),
           f"{results['num_train_examples']} training clips" if results.get("num_train_examples") else ""]
  if any(facts):
    lines += ["Evaluated at " + "; ".join(f for f in facts if f) + ".", ""]
  lines += ["| split | UA | UA 95% CI (utterances) | UA 95% CI (speakers) | WA | macro-F1 | utterances |",
            "|---|---:|---|---|---:|---:|---:|"]
  for s in splits:
    r = results[s]
    run = stats.run_of(r)
    cis = [stats.utterance_interval([run], unit=unit) if run else None for unit in stats.UNITS]
    cells = " | ".join(f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "–" for ci in cis)
    lines.append(f"| {s} | {_pct(r['ua'])} | {cells} | {_pct(r['wa'])} | "
                 f"{_pct(r.get('macro_f1'))} | {r.get('num_examples', '')} |")
  result = results[split]
  lines += ["", f"Per-class recall ({split}):", "",
            *recall_lines({k: [v] for k, v in result["per_class_recall"].items()}), ""]
  plot_confusion(result["confusion_matrix"], result["label_names"], f"{split}", os.path.join(out_dir,
                                                                                             "confusion_matrix.png"))
  lines += ["![confusion matrix](confusion_matrix.png)", ""]
  if plot_curves({"run": workdir}, os.path.join(out_dir, "training_curves.png")):
    lines += ["![training curves](training_curves.png)", ""]
  return lines


def best_group(root: str, cells: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
  """The row whose runs have the highest mean validation UA (chosen on validation, never on test), with
  its cells."""
  val = aggregate_lib.aggregate(root, cells, "validation", draws=1)
  axes = aggregate_lib.axis_names(rows)
  by_key = {tuple(str(r.get(a)) for a in axes): r for r in rows}
  best = max((r for r in val if r["n"]), key=lambda r: r["ua_mean"], default=None)
  if best is None:
    return None
  key = tuple(str(best.get(a)) for a in axes)
  members = [c for c in cells if tuple(str(c["axes"].get(a)) for a in axes) == key]
  return {"row": by_key.get(key), "validation_ua": best["ua_mean"], "cells": members,
          "label": ", ".join(f"{a}={best.get(a)}" for a in axes)}


def best_lines(root: str, best: dict[str, Any], out_dir: str, split: str = "test",
               heading: str = "## Best setting") -> list[str]:
  """Per-class recall (mean ± std over runs), the confusion matrix summed over runs, and the runs' curves."""
  found = [(c, fileio.read_json(os.path.join(root, c["name"], RESULTS))) for c in best["cells"]
           if fileio.exists(os.path.join(root, c["name"], RESULTS))]
  found = [(c, r) for c, r in found if split in r]
  if not found:
    return []
  names = found[0][1][split]["label_names"]
  cm = np.sum([np.asarray(r[split]["confusion_matrix"]) for _, r in found], axis=0)
  per_class = {n: [r[split]["per_class_recall"][n] for _, r in found if n in r[split]["per_class_recall"]]
               for n in names}
  row = best["row"]
  lines = [f"{heading} (by mean validation UA): {best['label']}", "",
           f"Mean validation UA {_pct(best['validation_ua'])}%; {split} UA {_pct(row['ua_mean'])} ± "
           f"{_pct(row['ua_std'])}%, WA {_pct(row['wa_mean'])} ± {_pct(row['wa_std'])}% over {len(found)} runs.",
           "", f"Per-class recall ({split}, mean ± std over runs):", "",
           *recall_lines({k: v for k, v in per_class.items() if v}), ""]
  plot_confusion(cm, names, f"{best['label']} ({split}, {len(found)} runs summed)",
                 os.path.join(out_dir, "confusion_matrix.png"))
  lines += ["![confusion matrix](confusion_matrix.png)", ""]
  curves = {"/".join(f"{k}={v}" for k, v in c["axes"].items() if k in aggregate_lib.AVERAGED_AXES) or c["name"]:
            os.path.join(root, c["name"]) for c, _ in found}
  if plot_curves(curves, os.path.join(out_dir, "training_curves.png")):
    lines += ["Training curves of its runs:", "", "![training curves](training_curves.png)", ""]
  return lines


def sweep_lines(root: str, cells: list[dict[str, Any]], out_dir: str, split: str = "test",
                compare_spec: str = "", reference: dict[str, float] | None = None,
                best_heading: str = "## Best setting", heading: str = "##"
                ) -> tuple[list[str], list[str], dict[str, Any]]:
  """The aggregate (intervals, comparisons, per-fold tables) with the label-efficiency figure, and the best
  setting's section; the figures go to out_dir. Returns both sections' lines and aggregate.write_all's
  output (with "best")."""
  out = aggregate_lib.write_all(root, cells, split, compare_spec, out_dir=out_dir, reference=reference,
                                heading=heading)
  lines = [out["markdown"]]
  if any(p.endswith("ua_vs_fraction.png") for p in out["paths"]):
    lines += ["![label efficiency](ua_vs_fraction.png)", ""]
  best = best_group(root, cells, out["rows"])
  best_section = best_lines(root, best, out_dir, split, best_heading) if best and best["row"] else []
  out["best"] = best
  return lines, best_section, out


def read_sweep_record(root: str) -> list[dict[str, Any]]:
  return fileio.read_json(os.path.join(root, SWEEP_RECORD))["cells"]


def write_report(path: str, out_dir: str | None = None, split: str = "test", compare_spec: str = "") -> str:
  """report.md (and its PNGs) for a run or a sweep root; returns the report's path."""
  out_dir = out_dir or os.path.join(path, "report")
  if fileio.exists(os.path.join(path, SWEEP_RECORD)):
    fileio.makedirs(out_dir)
    cells = read_sweep_record(path)
    body, best, _ = sweep_lines(path, cells, out_dir, split, compare_spec)
    lines = [f"# Sweep report: {path}", "", f"{len(cells)} cells.", "", *body, *best]
  elif fileio.exists(os.path.join(path, RESULTS)):
    fileio.makedirs(out_dir)
    lines = run_lines(path, out_dir, split)
  else:
    raise FileNotFoundError(f"{path}: neither a run ({RESULTS}) nor a sweep root ({SWEEP_RECORD}, written by "
                            "`lanser-sweep --run` or `--aggregate`); give a run's workdir or a sweep's --root")
  report = os.path.join(out_dir, "report.md")
  fileio.write_text(report, "\n".join(lines) + "\n")
  return report


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    raise app.UsageError("usage: lanser-report RUN_OR_SWEEP [--out=DIR] [--split=test] [--compare=axis=value]")
  try:
    report = write_report(argv[1], _OUT.value, _SPLIT.value, _COMPARE.value)
  except (FileNotFoundError, ValueError) as e:
    cli.log(f"error: {e}")
    return 2
  print(fileio.read_text(report))
  print(f"wrote {report} and its figures")
  return 0


def run():
  """The `lanser-report` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()

