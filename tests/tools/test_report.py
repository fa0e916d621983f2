"""lanser-report on a constructed run and sweep (results.json with per-utterance predictions, metrics.jsonl),
the features sweep (any feature folder, no Python), and what the sweep aggregate prints with intervals."""

import csv
import json
import os

import numpy as np
import pytest

from lanser_jax.engine import metrics
from lanser_jax.tools import aggregate, report, stats, sweep
from lanser_jax.utils import cli

NAMES = ["angry", "happy", "neutral", "sad"]
SWEEP = os.path.join(os.path.dirname(__file__), "..", "..", "lanser_jax", "experiments", "sweeps", "features.py")


def fake_run(workdir, labels, accuracy, rng, val_ua, clips=40, speakers=None):
  """results.json (validation and test, with predictions) and metrics.jsonl of a trained run."""
  os.makedirs(workdir, exist_ok=True)
  out = {"steps": 60, "best_step": 40, "selection": {"rule": "highest validation ua"}, "num_train_examples": clips}
  for split, acc in (("validation", val_ua), ("test", accuracy)):
    wrong = (labels + rng.integers(1, 4, len(labels))) % 4
    preds = np.where(rng.random(len(labels)) < acc, labels, wrong)
    result = metrics.from_confusion(metrics.confusion_matrix(labels, preds, 4), NAMES)
    result["predictions"] = {"utt_ids": [f"{split}{i}" for i in range(len(labels))], "pred": preds.tolist(),
                             "label": labels.tolist()}
    if speakers is not None:
      result["predictions"]["speaker"] = list(speakers)
    out[split] = result
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(out, f)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    for step in (20, 40, 60):
      f.write(json.dumps({"step": step, "train/loss": 2.0 / step, "train/accuracy": 0.5 + step / 200}) + "\n")
      f.write(json.dumps({"step": step, "validation/ua": val_ua * step / 60}) + "\n")
  return out


def test_report_of_one_run(tmp_path, capsys):
  rng = np.random.default_rng(0)
  run = str(tmp_path / "run")
  res = fake_run(run, rng.integers(0, 4, 120), 0.7, rng, 0.6)
  assert cli.call(report, [run]) == 0
  text = open(os.path.join(run, "report", "report.md")).read()
  assert "Evaluated at best step 40 of 60; highest validation ua; 40 training clips." in text
  line = next(l for l in text.splitlines() if l.startswith("| test |"))
  lo, hi = stats.utterance_interval([stats.run_of(res["test"])])
  assert line.startswith(f"| test | {100 * res['test']['ua']:.1f} | [{100 * lo:.1f}, {100 * hi:.1f}] |")
  assert lo < res["test"]["ua"] < hi
  assert f"| sad | {100 * res['test']['per_class_recall']['sad']:.1f} |" in text
  for png in ("confusion_matrix.png", "training_curves.png"):
    assert os.path.getsize(os.path.join(run, "report", png)) > 5000
  assert cli.call(report, [str(tmp_path / "nothing")]) == 2
  assert "neither a run (results.json) nor a sweep root" in capsys.readouterr().err


def test_report_gives_the_speaker_interval_where_the_test_split_names_enough_speakers(tmp_path):
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 4, 120)
  for speakers, expect in (([f"spk{i % 6}" for i in range(120)], True), ([f"spk{i % 2}" for i in range(120)], False)):
    run = str(tmp_path / f"run{len(set(speakers))}")
    res = fake_run(run, labels, 0.7, rng, 0.6, speakers=speakers)
    assert cli.call(report, [run]) == 0
    text = open(os.path.join(run, "report", "report.md")).read()
    assert "| split | UA | UA 95% CI (utterances) | UA 95% CI (speakers) |" in text
    cells = next(l for l in text.splitlines() if l.startswith("| test |")).split(" | ")
    ci = stats.utterance_interval([stats.run_of(res["test"])], unit="speaker")
    assert (ci is not None) == expect
    assert cells[3] == (f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if expect else "–")


def test_features_sweep_folds_and_pretraining(tmp_path):
  one = tmp_path / "features"
  one.mkdir()
  (one / "dataset.json").write_text("{}")
  cells = sweep.load_sweep(f"{SWEEP}:features={one}")
  assert len(cells) == 3 * 3 and {c["axes"]["pretrained"] for c in cells} == {"none"}
  assert cells[0]["name"] == "none/frac0.1/seed0" and cells[0]["overrides"] == {"data.dir": str(one)}
  folds = tmp_path / "folds"
  for k in ("fold_1", "fold_2"):
    (folds / k).mkdir(parents=True)
    (folds / k / "dataset.json").write_text("{}")
  (folds / "notes").mkdir()  # a subfolder without dataset.json is no fold
  cells = sweep.load_sweep(f"{SWEEP}:features={folds},pretrain=/runs/pre,fractions=0.5+1.0,seeds=4,steps=7")
  assert len(cells) == 2 * 2 * 2
  cell = next(c for c in cells if c["axes"]["pretrained"] == "pre" and c["axes"]["fold"] == "fold_2")
  assert cell["name"] == "fold_2/pre/frac0.5/seed4"
  assert cell["overrides"] == {"data.dir": str(folds / "fold_2"), "init_from": "/runs/pre", "num_train_steps": 7}
  assert cell["config"] == "lanser_jax/experiments/demo_finetune.py:fraction=0.5,seed=4"
  c = sweep.load_cell_config(cell)
  assert (c.data.label_fraction, c.seed, c.data.subset_seed, c.num_train_steps) == (0.5, 4, 4, 7)
  with pytest.raises(FileNotFoundError, match="neither a feature folder"):
    sweep.load_sweep(f"{SWEEP}:features={folds / 'notes'}")
  with pytest.raises(ValueError, match="needs features="):
    sweep.load_sweep(SWEEP)


def test_features_sweep_on_a_labelling_workdir(tmp_path, capsys):
  """A labelling workdir with every fold of a protocol (features_<protocol>_fold<K>, dataset.json naming the fold)
  is the sweep's input as it is: folds fold1..fold10 in numeric order; two protocols there need protocol=."""
  work = tmp_path / "labels"
  (work / "manifest").mkdir(parents=True)
  for k in (1, 2, 10):
    (work / f"features_speaker_kfold_fold{k}").mkdir()
    (work / f"features_speaker_kfold_fold{k}" / "dataset.json").write_text(
        json.dumps({"protocol": {"name": "speaker_kfold", "fold": k}}))
  cells = sweep.load_sweep(f"{SWEEP}:features={work},fractions=1.0,seeds=0")
  assert [c["name"] for c in cells] == ["fold1/none/frac1.0/seed0", "fold2/none/frac1.0/seed0",
                                        "fold10/none/frac1.0/seed0"]
  assert cells[2]["overrides"]["data.dir"] == str(work / "features_speaker_kfold_fold10")
  (work / "features_leave_one_speaker_out_fold1").mkdir()
  (work / "features_leave_one_speaker_out_fold1" / "dataset.json").write_text(
      json.dumps({"protocol": {"name": "leave_one_speaker_out", "fold": 1}}))
  assert cli.call(sweep, [f"--sweep={SWEEP}:features={work}", f"--root={tmp_path / 'r'}", "--print"]) == 2
  assert ("holds the folds of 2 protocols ['leave_one_speaker_out', 'speaker_kfold']; pick one with "
          "protocol=<name>") in capsys.readouterr().err
  cells = sweep.load_sweep(f"{SWEEP}:features={work},protocol=leave_one_speaker_out,fractions=1.0,seeds=0")
  assert [c["overrides"]["data.dir"] for c in cells] == [str(work / "features_leave_one_speaker_out_fold1")]
  with pytest.raises(FileNotFoundError, match="no feature folder of protocol='loso'"):
    sweep.load_sweep(f"{SWEEP}:features={work},protocol=loso")


def test_sweep_aggregate_and_report_with_intervals(tmp_path, capsys):
  """Two folds x 3 seeds x (scratch, pre-trained) x 2 fractions, the pre-trained runs clearly better at 10%
  and equal at 100%: the table, the comparisons, the per-fold tables, the figure and the report."""
  feats = tmp_path / "features"
  for k in ("a", "b"):
    (feats / k).mkdir(parents=True)
    (feats / k / "dataset.json").write_text("{}")
  spec = f"{SWEEP}:features={feats},pretrain=/runs/wl,fractions=0.1+1.0"
  root = str(tmp_path / "root")
  cells = sweep.load_sweep(spec)
  rng = np.random.default_rng(1)
  labels = {"a": rng.integers(0, 4, 200), "b": rng.integers(0, 4, 150)}
  for c in cells:
    a = c["axes"]
    acc = {("wl", 0.1): 0.8, ("none", 0.1): 0.5}.get((a["pretrained"], a["fraction"]), 0.85)
    fake_run(os.path.join(root, c["name"]), labels[a["fold"]], acc, rng, acc, clips=int(a["fraction"] * 400))
  assert cli.call(sweep, ["--sweep", spec, "--root", root, "--aggregate"]) == 0
  printed = capsys.readouterr().out
  assert "## Paired comparisons" in printed and "### all cells" in printed
  rows = {(r["pretrained"], r["fraction"]): r for r in csv.DictReader(open(os.path.join(root, "aggregate.csv")))}
  row = rows[("wl", "0.1")]
  assert row["train_clips"] == "40" and row["n"] == "6"
  assert float(row["ua_utt_ci_lo"]) < float(row["ua_mean"]) < float(row["ua_utt_ci_hi"])
  assert float(row["ua_seed_ci_lo"]) < float(row["ua_mean"]) < float(row["ua_seed_ci_hi"])
  comparisons = {r["fraction"]: r for r in csv.DictReader(open(os.path.join(root, "aggregate_comparisons.csv")))}
  assert comparisons["0.1"]["significant"] == "True" and float(comparisons["0.1"]["ci_lo"]) > 0.15
  assert comparisons["1.0"]["num_pairs"] == "6" and float(comparisons["1.0"]["ci_lo"]) < 0 < float(
      comparisons["1.0"]["ci_hi"])
  assert json.load(open(os.path.join(root, "sweep.json")))["cells"][0]["axes"]["fold"] == "a"
  assert cli.call(report, [root]) == 0
  text = open(os.path.join(root, "report", "report.md")).read()
  assert "## Best setting (by mean validation UA): pretrained=none, fraction=1.0" in text or \
      "## Best setting (by mean validation UA): pretrained=wl, fraction=1.0" in text
  assert "Per-class recall (test, mean ± std over runs)" in text and "![label efficiency](ua_vs_fraction.png)" in text
  for png in ("ua_vs_fraction.png", "confusion_matrix.png", "training_curves.png"):
    assert os.path.getsize(os.path.join(root, "report", png)) > 5000
  # the plot's rows: bands and bars need both intervals
  agg = aggregate.aggregate(root, cells)
  assert all(not np.isnan(r["ua_utt_ci_lo"]) and not np.isnan(r["ua_seed_ci_lo"]) for r in agg)


def test_figures_label_only_the_fractions_and_keep_the_whole_title(tmp_path, monkeypatch):
  """Seen on a 30%/100% sweep: the log axis labelled its minor ticks ('4x10^1'), and the confusion matrix's
  title ('pretrained=none, fraction=1.0 (test, 6 runs summed)') ran past a 4-class figure's edge."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  closed, real_close = [], plt.close
  monkeypatch.setattr(plt, "close", closed.append)
  row = {"pretrained": "none", "n": 2, "ua_mean": 0.7, "ua_seed_ci_lo": 0.6, "ua_seed_ci_hi": 0.8,
         "ua_utt_ci_lo": 0.65, "ua_utt_ci_hi": 0.75}
  assert aggregate.plot_ua_vs_fraction([dict(row, fraction=0.3), dict(row, fraction=1.0, ua_mean=0.75)],
                                       str(tmp_path / "ua.png"))
  ax = closed[-1].axes[0]
  assert [t.get_text() for t in ax.get_xticklabels() if t.get_text()] == ["30", "100"]
  assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
  title = "pretrained=none, fraction=1.0 (test, 6 runs summed)"
  report.plot_confusion(np.eye(4) * 5, NAMES, title, str(tmp_path / "cm.png"))
  fig = closed[-1]
  fig.canvas.draw()
  shown = fig.axes[0].title
  assert shown.get_text().replace("\n", " ") == title
  box, edge = shown.get_window_extent(), fig.bbox
  assert edge.x0 <= box.x0 and box.x1 <= edge.x1
  for f in closed:
    real_close(f)
