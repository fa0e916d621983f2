"""Aggregation of a sweep's results.json files: tables with intervals, paired comparisons, the label-efficiency plot.

Used by `lanser-sweep --aggregate` and by `lanser-report` (which also serves the demo). Cells are grouped by
every axis except seed and fold; each group gets the mean and sample std over its runs, a 95% t interval over
runs (seeds and folds), a 95% bootstrap interval over test utterances and, where the test splits name at
least stats.MIN_SPEAKERS speakers per fold, one over test speakers; each setting is compared with
the baseline setting of one axis (pre-trained vs scratch: `pretrained=none`, or the demo's `init=scratch`)
at the same other axes by the paired two-level bootstrap of lanser_jax/tools/stats.py.
"""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np

from lanser_jax.tools import stats
from lanser_jax.utils import fileio

RESULTS = "results.json"
AVERAGED_AXES = ("seed", "fold")  # aggregated over; every other axis makes a row
# (axis, baseline value): the first whose axis the sweep has is compared, unless one is given.
COMPARISONS = (("pretrained", "none"), ("init", "scratch"))
STATS = ("n", "missing", "ua_mean", "ua_std", "ua_seed_ci_lo", "ua_seed_ci_hi", "ua_utt_ci_lo", "ua_utt_ci_hi",
         "ua_spk_ci_lo", "ua_spk_ci_hi", "wa_mean", "wa_std", "train_clips")


def _sort_key(value: Any):
  return (0, float(value), "") if isinstance(value, (int, float)) else (1, 0.0, str(value))


def axis_names(rows: list[dict[str, Any]]) -> list[str]:
  names: list[str] = []
  for row in rows:
    names += [k for k in row if k not in STATS and not k.startswith("_") and k not in names]
  return names


def aggregate(root: str, cells: list[dict[str, Any]], split: str = "test",
              averaged: tuple[str, ...] = AVERAGED_AXES, draws: int = stats.NUM_DRAWS) -> list[dict[str, Any]]:
  """One row per group of cells that differ only in the `averaged` axes: n (cells with results), missing,
  UA/WA mean and sample std (ddof 1; 0 for one run), UA's 95% intervals over runs, over test utterances
  (when every run kept its predictions) and over test speakers (when they also name enough speakers), and
  the training clips the runs used. `_runs` holds the runs
  (lanser_jax/tools/stats.py) for the paired comparisons."""
  groups: dict[tuple, dict[str, Any]] = {}
  for cell in cells:
    axes = {k: v for k, v in cell["axes"].items() if k not in averaged}
    key = tuple(sorted((k, str(v)) for k, v in axes.items()))
    group = groups.setdefault(key, {"axes": axes, "ua": [], "wa": [], "runs": [], "clips": set(), "missing": 0,
                                    "without_predictions": 0})
    path = os.path.join(root, cell["name"], RESULTS)
    results = fileio.read_json(path) if fileio.exists(path) else {}
    result = results.get(split)
    if result is None:
      group["missing"] += 1
      continue
    group["ua"].append(float(result["ua"]))
    group["wa"].append(float(result.get("wa", "nan")))  # a hand-made results.json may carry UA alone
    if results.get("num_train_examples") is not None:
      group["clips"].add(int(results["num_train_examples"]))
    run = stats.run_of(result, cell["axes"].get("fold", 0), cell["axes"].get("seed", 0))
    if run is None:
      group["without_predictions"] += 1
    else:
      group["runs"].append(run)
  rows = []
  for group in groups.values():
    ua, wa = stats.seed_summary(group["ua"]), stats.seed_summary(group["wa"])
    complete = group["runs"] and not group["without_predictions"]
    utt_ci = stats.utterance_interval(group["runs"], "ua", draws) if complete else None
    spk_ci = stats.utterance_interval(group["runs"], "ua", draws, unit="speaker") if complete else None
    row = dict(group["axes"])
    row.update({"n": ua["n"], "missing": group["missing"], "ua_mean": ua["mean"], "ua_std": ua["std"],
                "ua_seed_ci_lo": ua["ci"][0] if ua["ci"] else float("nan"),
                "ua_seed_ci_hi": ua["ci"][1] if ua["ci"] else float("nan"),
                "ua_utt_ci_lo": utt_ci[0] if utt_ci else float("nan"),
                "ua_utt_ci_hi": utt_ci[1] if utt_ci else float("nan"),
                "ua_spk_ci_lo": spk_ci[0] if spk_ci else float("nan"),
                "ua_spk_ci_hi": spk_ci[1] if spk_ci else float("nan"),
                "wa_mean": wa["mean"], "wa_std": wa["std"],
                "train_clips": "/".join(str(n) for n in sorted(group["clips"])),
                "_runs": group["runs"] if complete else []})
    rows.append(row)
  names = axis_names(rows)
  rows.sort(key=lambda r: tuple(_sort_key(r.get(a, "")) for a in names))
  return rows


def comparison_axis(rows: list[dict[str, Any]], spec: str = "") -> tuple[str, str] | None:
  """`axis=baseline` (given), else the first of COMPARISONS whose axis the rows have; None when neither."""
  names = axis_names(rows)
  if spec:
    axis, sep, baseline = spec.partition("=")
    if not sep or axis not in names:
      raise ValueError(f"--compare={spec!r}: expected axis=baseline_value with an axis of this sweep ({names})")
    return axis, baseline
  return next(((a, b) for a, b in COMPARISONS if a in names), None)


def compare(rows: list[dict[str, Any]], axis: str, baseline: str, draws: int = stats.NUM_DRAWS) -> list[dict]:
  """Each row whose `axis` is not `baseline` against the baseline row with every other axis equal."""
  others = [a for a in axis_names(rows) if a != axis]
  base = {tuple(str(r.get(a)) for a in others): r for r in rows if str(r.get(axis)) == baseline}
  out = []
  for r in rows:
    b = base.get(tuple(str(r.get(a)) for a in others))
    if str(r.get(axis)) == baseline or b is None:
      continue
    unit = "speaker" if stats.speakers_usable(r["_runs"]) and stats.speakers_usable(b["_runs"]) else "utterance"
    result = (stats.paired_comparison(r["_runs"], b["_runs"], "ua", draws, unit=unit)
              if r["_runs"] and b["_runs"] else None)
    out.append({**{a: r.get(a) for a in others}, axis: r.get(axis), "baseline": baseline, "result": result})
  return out


def _pct(x: float) -> str:
  return "–" if x is None or np.isnan(x) else f"{100 * x:.1f}"


def _ci(lo: float, hi: float) -> str:
  return "–" if np.isnan(lo) else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def table_lines(rows: list[dict[str, Any]], axes: list[str]) -> list[str]:
  lines = ["| " + " | ".join(axes + ["UA", "UA 95% CI (seeds)", "UA 95% CI (utterances)", "UA 95% CI (speakers)",
                                     "WA", "train clips", "n", "missing"]) + " |", "|" + "---|" * (len(axes) + 8)]
  for r in rows:
    lines.append("| " + " | ".join(
        [str(r.get(a, "")) for a in axes]
        + [f"{_pct(r['ua_mean'])} ± {_pct(r['ua_std'])}" if r["n"] else "–",
           _ci(r["ua_seed_ci_lo"], r["ua_seed_ci_hi"]), _ci(r["ua_utt_ci_lo"], r["ua_utt_ci_hi"]),
           _ci(r.get("ua_spk_ci_lo", float("nan")), r.get("ua_spk_ci_hi", float("nan"))),
           f"{_pct(r['wa_mean'])} ± {_pct(r['wa_std'])}" if r["n"] else "–", r["train_clips"] or "–",
           str(r["n"]), str(r["missing"])]) + " |")
  return lines


def write_csv(rows: list[dict[str, Any]], path: str):
  axes = axis_names(rows)
  with fileio.atomic_write(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(axes + list(STATS))
    for r in rows:
      writer.writerow([r.get(a, "") for a in axes]
                      + [f"{r[s]:.4f}" if isinstance(r[s], float) else r[s] for s in STATS])


def intro(split: str, over: str) -> str:
  return (f"Test split `{split}`, UA and WA in %: mean ± sample std over {over}; 95% CI (seeds): Student t "
          "interval of the mean over those runs; 95% CI (utterances): bootstrap over the test utterances "
          "(2,000 draws, the same utterances for every seed); 95% CI (speakers): the same over test speakers, "
          f"given where every fold's test split names at least {stats.MIN_SPEAKERS} speakers (utterances of one "
          "speaker are correlated, so it is the honest one where given); n = runs with results "
          "(docs/results.md says how each is computed).")


def comparison_lines(comparisons: list[dict[str, Any]], axis: str, heading: str = "##") -> list[str]:
  if not comparisons:
    return []
  keys = [k for k in comparisons[0] if k not in ("result", "baseline", axis)]
  lines = [f"{heading} Paired comparisons", "",
           f"Each `{axis}` setting minus `{axis}={comparisons[0]['baseline']}` at the same other axes: mean UA "
           "difference (points) over runs paired by fold and seed, its 95% interval and two-sided p-value from a "
           "paired bootstrap over seeds and the test units of the `resampled` column (speakers where every fold "
           f"names at least {stats.MIN_SPEAKERS}, else utterances); significant = the interval excludes 0.", "",
           "| " + " | ".join(keys + [axis, "ΔUA", "95% CI", "p", "pairs", "resampled", "significant"]) + " |",
           "|" + "---|" * (len(keys) + 7)]
  for c in comparisons:
    r = c["result"]
    cells = ([f"{100 * r['diff']:+.1f}", f"[{100 * r['ci'][0]:+.1f}, {100 * r['ci'][1]:+.1f}]",
              stats.p_text(r), str(r["num_pairs"]), r.get("unit", "utterance") + "s",
              "yes" if r["significant"] else "no"]
             if r else ["–", "–", "–", "0", "–", "no predictions"])
    lines.append("| " + " | ".join([str(c.get(k, "")) for k in keys] + [str(c[axis])] + cells) + " |")
  return lines + [""]


def write_comparisons_csv(comparisons: list[dict[str, Any]], path: str):
  with fileio.atomic_write(path, "w", newline="") as f:
    writer = csv.writer(f)
    keys = [k for k in (comparisons[0] if comparisons else {}) if k != "result"]
    writer.writerow(keys + ["ua_diff", "ci_lo", "ci_hi", "p_value", "num_pairs", "unit", "significant"])
    for c in comparisons:
      r = c["result"] or {}
      writer.writerow([c[k] for k in keys] + [
          f"{r['diff']:.4f}" if r else "", f"{r['ci'][0]:.4f}" if r else "", f"{r['ci'][1]:.4f}" if r else "",
          f"{r['p_value']:.4f}" if r else "", r.get("num_pairs", 0), r.get("unit", ""), r.get("significant", "")])


def fold_lines(fold_rows: list[dict[str, Any]], split: str = "test", heading: str = "##") -> list[str]:
  """Per protocol (each dataset x protocol), one table of every fold (mean ± std over seeds); none when
  there is one fold only."""
  if len({str(r.get("fold")) for r in fold_rows if "fold" in r}) < 2:
    return []
  axes = [a for a in axis_names(fold_rows) if a not in ("dataset", "protocol")]
  sections: dict[tuple, list[dict[str, Any]]] = {}
  for r in fold_rows:
    sections.setdefault((str(r.get("dataset", "")), str(r.get("protocol", ""))), []).append(r)
  lines = [f"{heading} Per fold", "", "Each fold's figures over seeds; the table above pools every fold and seed. "
           + intro(split, "seeds"), ""]
  for (dataset, protocol), rows in sections.items():
    title = " · ".join(x for x in (dataset, f"protocol {protocol}" if protocol else "") if x)
    lines += [f"{heading}# {title or 'all cells'}", "", *table_lines(rows, axes), ""]
  return lines


def plot_ua_vs_fraction(rows: list[dict[str, Any]], path: str, line_axis: str = "pretrained",
                        reference: dict[str, float] | None = None) -> bool:
  """UA vs label fraction, one line per `line_axis` value, one panel per value of the other axes: the mean
  with error bars (95% CI over seeds) and a band (95% CI over test utterances). Rows without a fraction
  (baselines) are left out; `reference` draws horizontal lines (e.g. the majority class). False when nothing
  is plottable."""
  rows = [r for r in rows if "fraction" in r and r["n"] > 0]
  if not rows:
    return False
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  panel_axes = [a for a in axis_names(rows) if a not in ("fraction", line_axis)]
  panels: dict[str, list[dict[str, Any]]] = {}
  for r in rows:
    panels.setdefault(", ".join(f"{a}={r.get(a)}" for a in panel_axes) or "", []).append(r)
  fig, axs = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
  for ax, (title, panel_rows) in zip(axs[0], sorted(panels.items())):
    lines: dict[str, list[dict[str, Any]]] = {}
    for r in panel_rows:
      lines.setdefault(str(r.get(line_axis, "all")), []).append(r)
    for label, points in sorted(lines.items()):
      points.sort(key=lambda r: float(r["fraction"]))
      x = np.asarray([float(r["fraction"]) * 100 for r in points])
      y = np.asarray([100 * r["ua_mean"] for r in points])
      lo = np.asarray([100 * r["ua_seed_ci_lo"] for r in points])
      hi = np.asarray([100 * r["ua_seed_ci_hi"] for r in points])
      yerr = np.where(np.isnan(lo), 0, np.stack([y - lo, hi - y]))
      line = ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, label=f"{label} (n={points[0]['n']})")
      ulo = np.asarray([100 * r["ua_utt_ci_lo"] for r in points])
      uhi = np.asarray([100 * r["ua_utt_ci_hi"] for r in points])
      if not np.isnan(ulo).any():
        ax.fill_between(x, ulo, uhi, alpha=0.18, color=line.lines[0].get_color())
    for name, value in (reference or {}).items():
      ax.axhline(100 * value, color="gray", ls=":", label=name)
    ax.set_xscale("log")
    ax.set_xticks(sorted({float(r["fraction"]) * 100 for r in panel_rows}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    # Within one decade (e.g. 30-100%) a log axis labels its minor ticks too ("4x10^1"): only the fractions.
    ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_title(title)
    ax.set_xlabel("labelled training data (%)")
    ax.set_ylabel("test UA (%)")
    ax.grid(alpha=0.3)
    ax.legend(title=line_axis, fontsize=8)
  fig.suptitle("UA vs labels: mean, 95% CI over seeds (bars), over test utterances (band)", fontsize=10)
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, format="png", dpi=120)
  plt.close(fig)
  return True


def write_all(root: str, cells: list[dict[str, Any]], split: str = "test", compare_spec: str = "",
              out_dir: str | None = None, draws: int = stats.NUM_DRAWS,
              reference: dict[str, float] | None = None, heading: str = "##") -> dict[str, Any]:
  """aggregate.{md,csv}, aggregate_folds.csv, aggregate_comparisons.csv and ua_vs_fraction.png (with the
  `reference` lines) in `out_dir` (default: root). Returns the rows, the comparisons, the Markdown and the
  paths written. `heading`: the Markdown level of its sections."""
  out_dir = out_dir or root
  fileio.makedirs(out_dir)
  rows = aggregate(root, cells, split, draws=draws)
  fold_rows = aggregate(root, cells, split, averaged=("seed",), draws=draws)
  chosen = comparison_axis(rows, compare_spec)
  comparisons = compare(rows, *chosen, draws=draws) if chosen else []
  prefix = os.path.join(out_dir, "aggregate")
  write_csv(rows, prefix + ".csv")
  write_csv(fold_rows, prefix + "_folds.csv")
  paths = [prefix + ".md", prefix + ".csv", prefix + "_folds.csv"]
  if comparisons:
    write_comparisons_csv(comparisons, prefix + "_comparisons.csv")
    paths.append(prefix + "_comparisons.csv")
  over = "seeds and folds" if len({str(c["axes"].get("fold")) for c in cells}) > 1 else "seeds"
  lines = [intro(split, over), "", *table_lines(rows, axis_names(rows)), ""]
  lines += comparison_lines(comparisons, chosen[0], heading) if chosen else []
  lines += fold_lines(fold_rows, split, heading)
  markdown = "\n".join(lines) + "\n"
  fileio.write_text(prefix + ".md", markdown)
  plot = os.path.join(out_dir, "ua_vs_fraction.png")
  if plot_ua_vs_fraction(rows, plot, chosen[0] if chosen else "pretrained", reference):
    paths.append(plot)
  return {"rows": rows, "comparisons": comparisons, "axis": chosen, "markdown": markdown, "paths": paths}
