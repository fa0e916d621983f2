"""The sweep runner: enumerates cells, skips finished ones, prints commands, aggregates, runs a real cell."""

import csv
import json
import os
import shlex

from absl import app
import numpy as np
import pytest

from lanser_jax.tools import sweep
from lanser_jax.utils import cli

SWEEPS = os.path.join(os.path.dirname(__file__), "..", "..", "lanser_jax", "experiments", "sweeps")


def sweep_file(name, arg=""):
  return os.path.join(SWEEPS, name) + (f":{arg}" if arg else "")


@pytest.mark.parametrize("name,arg,count", [
    ("label_efficiency.py", "", 5 * 3 * 3 * 6),
    ("linear_probe.py", "", 5 * 2 * 3 * 6),
    ("weak_label_ablation.py", "", 6 * 2 * 3 * 6),
    ("baselines.py", "", 6 * 4),
    ("pretrain.py", "", 2),
    ("pretrain.py", "ablations=True", 7),
])
def test_sweeps_enumerate_the_expected_cells(name, arg, count):
  cells = sweep.load_sweep(sweep_file(name, arg))
  assert len(cells) == count
  assert len({c["name"] for c in cells}) == count  # load_sweep also checks this


def test_label_efficiency_grid_is_complete():
  cells = sweep.load_sweep(sweep_file("label_efficiency.py", "platform=tpu,runlocal"))
  combos = {(c["axes"]["dataset"], c["axes"]["fold"], c["axes"]["pretrained"], c["axes"]["fraction"],
             c["axes"]["seed"]) for c in cells}
  assert len(combos) == 270
  assert {c["axes"]["fraction"] for c in cells} == {0.1, 0.2, 0.3, 0.5, 1.0}
  assert {c["axes"]["fold"] for c in cells if c["axes"]["dataset"] == "iemocap"} == {1, 2, 3, 4, 5}
  assert all("platform=tpu" in c["config"] and c["config"].endswith(",runlocal") for c in cells)


def test_every_cell_config_loads():
  """The specs the sweeps hand to lanser_jax.main are valid experiment arguments."""
  from lanser_jax import config_lib
  seen = set()
  for name in ("label_efficiency.py", "linear_probe.py", "weak_label_ablation.py", "pretrain.py:ablations=True"):
    for cell in sweep.load_sweep(os.path.join(SWEEPS, name)):
      file, _, arg = cell["config"].partition(":")
      key = (file, "probe=True" in arg, "template" in arg, "fold=1" in arg)
      if key not in seen:  # one of each kind keeps this fast
        seen.add(key)
        config_lib.load_experiment(cell["config"])
  assert len(seen) >= 6


def test_only_filters_and_rejects_unknown_axes():
  cells = sweep.load_sweep(sweep_file("label_efficiency.py"))
  chosen = sweep.select(cells, sweep.parse_only(["dataset=crema_d", "fraction=0.1,1.0"]))
  assert len(chosen) == 2 * 3 * 3
  with pytest.raises(ValueError, match="not axes"):
    sweep.select(cells, sweep.parse_only(["colour=red"]))


def fake_results(root, name, ua, wa):
  os.makedirs(os.path.join(root, name), exist_ok=True)
  with open(os.path.join(root, name, "results.json"), "w") as f:
    json.dump({"test": {"ua": ua, "wa": wa}}, f)


def test_print_skips_finished_cells(tmp_path, capsys):
  root = str(tmp_path)
  spec = sweep_file("label_efficiency.py")
  cells = sweep.select(sweep.load_sweep(spec), {"dataset": {"crema_d"}, "pretrained": {"none"}})
  fake_results(root, cells[0]["name"], 0.5, 0.5)
  assert cli.call(sweep, ["--sweep", spec, "--root", root, "--print", "--only=dataset=crema_d",
                     "--only=pretrained=none"]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == len(cells) - 1 == 14
  argv = shlex.split(lines[0])
  assert argv[:3] == ["python", "-m", "lanser_jax.main"]
  assert argv[3].startswith("--config=lanser_jax/experiments/finetune_crema_d.py:") and argv[4].startswith(f"--workdir={root}/")
  assert all(cells[0]["name"] not in line for line in lines)
  # --run on finished cells does nothing
  done = [c for c in cells[:1]]
  assert sweep.run_cells(root, done, in_process=True, log=lambda *_: None) == {
      "cells": 1, "skipped": 1, "ran": 0, "failed": 0}


def test_baseline_commands():
  cells = sweep.load_sweep(sweep_file("baselines.py", "data_root=/d,runs_root=/r"))
  zs = next(c for c in cells if c["axes"]["method"] == "zero_shot_peoples_speech" and c["axes"]["fold"] == 3)
  argv = sweep.command("/root", zs)
  assert argv[:4] == ["python", "-m", "lanser_jax.tools.baselines", "--kind=zero_shot"]
  assert "--data_dir=/d/iemocap/features_fold3" in argv and "--target_set=iemocap4" in argv
  assert "--pretrain=/r/pretrain_peoples_speech_fine40-conversation-entailment_hard" in argv


def test_aggregate_means_and_stds(tmp_path, capsys):
  root = str(tmp_path / "runs")
  spec = tmp_path / "grid.py"
  spec.write_text(
      "def get_sweep(arg=None):\n"
      "  return [{'name': f'{d}/{p}/{f}/{fold}/{s}', 'config': 'x.py',\n"
      "           'axes': {'dataset': d, 'pretrained': p, 'fraction': f, 'fold': fold, 'seed': s}}\n"
      "          for d in ('iemocap',) for p in ('none', 'ps') for f in (0.1, 1.0)\n"
      "          for fold in (1, 2) for s in (0, 1)]\n")
  cells = sweep.load_sweep(str(spec))
  ua = {}
  for c in cells:
    a = c["axes"]
    if (a["pretrained"], a["fraction"], a["fold"], a["seed"]) == ("ps", 1.0, 2, 1):
      continue  # a missing run
    value = 0.4 + 0.2 * (a["pretrained"] == "ps") + 0.1 * (a["fraction"] == 1.0) + 0.01 * a["fold"] + 0.02 * a["seed"]
    ua.setdefault((a["pretrained"], a["fraction"]), []).append(value)
    fake_results(root, c["name"], value, value / 2)
  assert cli.call(sweep, ["--sweep", str(spec), "--root", root, "--aggregate"]) == 0
  with open(os.path.join(root, "aggregate.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4
  assert list(rows[0])[:3] == ["dataset", "pretrained", "fraction"]
  for row in rows:
    values = np.asarray(ua[(row["pretrained"], float(row["fraction"]))])
    assert float(row["ua_mean"]) == pytest.approx(values.mean(), abs=1e-4)
    assert float(row["ua_std"]) == pytest.approx(values.std(ddof=1), abs=1e-4)
    assert float(row["wa_mean"]) == pytest.approx(values.mean() / 2, abs=1e-4)
    assert int(row["n"]) + int(row["missing"]) == 4
  assert [(r["pretrained"], r["fraction"], r["n"]) for r in rows] == [
      ("none", "0.1", "4"), ("none", "1.0", "4"), ("ps", "0.1", "4"), ("ps", "1.0", "3")]
  md = open(os.path.join(root, "aggregate.md")).read()
  # UA 0.71, 0.73, 0.72: t interval 72.0 ± 4.303 * 1.0 / sqrt(3); no predictions, so no utterance interval
  assert "| iemocap | ps | 1.0 | 72.0 ± 1.0 | [69.5, 74.5] | – | – | 36.0 ± 0.5 | – | 3 | 1 |" in md
  assert os.path.getsize(os.path.join(root, "ua_vs_fraction.png")) > 1000


@pytest.mark.slow
def test_real_tiny_cell_end_to_end(tmp_path, synth_dir):
  """One fine-tuning cell (runlocal) and one failing cell through the runner, on generated features."""
  root = str(tmp_path / "runs")
  spec = tmp_path / "tiny.py"
  fast = {"data.dir": synth_dir, "data.crop_frames": 64, "data.eval_hop_frames": 32, "num_train_steps": 10,
          "eval_every_steps": 10, "checkpoint_every_steps": 10, "log_every_steps": 5}
  spec.write_text(
      "def get_sweep(arg=None):\n"
      f"  fast = {fast!r}\n"
      "  cell = lambda name, over: {'name': name, 'axes': {'fraction': 0.5, 'seed': 0, 'pretrained': name},\n"
      "      'config': 'lanser_jax/experiments/finetune_crema_d.py:runlocal,platform=cpu,fraction=0.5', 'overrides': over}\n"
      "  return [cell('broken', dict(fast, **{'data.dir': '/nonexistent'})), cell('ok', fast)]\n")
  logs = []
  counts = sweep.run_cells(root, sweep.load_sweep(str(spec)), in_process=True, log=logs.append)
  assert counts == {"cells": 2, "skipped": 0, "ran": 1, "failed": 1}
  results = json.load(open(os.path.join(root, "ok", "results.json")))
  assert results["steps"] == 10 and 0.0 <= results["test"]["ua"] <= 1.0
  assert len(results["test"]["confusion_matrix"]) == 4
  errors = [json.loads(line) for line in open(os.path.join(root, "sweep_errors.jsonl"))]
  assert errors[0]["name"] == "broken" and "/nonexistent" in errors[0]["error"]
  assert any("ETA" in line for line in logs)
  again = sweep.run_cells(root, sweep.load_sweep(str(spec)), in_process=True, log=lambda *_: None)
  assert again["skipped"] == 1 and again["ran"] == 0


@pytest.mark.subprocess
def test_subprocess_baseline_cell(tmp_path, synth_dir):
  """--run without --in_process: a baseline cell through `python -m lanser_jax.tools.baselines`."""
  root = str(tmp_path / "runs")
  spec = tmp_path / "base.py"
  spec.write_text("def get_sweep(arg=None):\n"
                  f"  return [{{'name': 'maj', 'axes': {{'method': 'majority'}},\n"
                  f"           'baseline': {{'kind': 'majority', 'data_dir': {synth_dir!r}}}}}]\n")
  assert cli.call(sweep, ["--sweep", str(spec), "--root", root, "--run"]) == 0
  results = json.load(open(os.path.join(root, "maj", "results.json")))
  assert results["baseline"] == "majority"
  assert results["test"]["ua"] == pytest.approx(0.25)  # one class predicted of four present
  assert "majority: WA" in open(os.path.join(root, "maj", "sweep_log.txt")).read()


def test_aggregate_per_protocol_fold_tables(tmp_path, capsys):
  """Two protocols of different fold counts: one summary row each (mean ± std over folds and seeds),
  and a per-fold table per protocol (mean ± std over seeds)."""
  root = str(tmp_path / "runs")
  spec = tmp_path / "grid.py"
  spec.write_text(
      "def get_sweep(arg=None):\n"
      "  folds = {'loso': 5, 'lospk': 10}\n"
      "  return [{'name': f'{p}/{fold}/{s}', 'config': 'x.py',\n"
      "           'axes': {'dataset': 'iemocap', 'protocol': p, 'fold': fold, 'seed': s}}\n"
      "          for p in folds for fold in range(1, folds[p] + 1) for s in (0, 1, 2)]\n")
  cells = sweep.load_sweep(str(spec))
  values = {}
  for c in cells:
    a = c["axes"]
    v = (0.6 if a["protocol"] == "loso" else 0.5) + 0.01 * a["fold"] + 0.003 * a["seed"]
    values.setdefault(a["protocol"], []).append(v)
    values.setdefault((a["protocol"], a["fold"]), []).append(v)
    fake_results(root, c["name"], v, v - 0.05)
  assert cli.call(sweep, ["--sweep", str(spec), "--root", root, "--aggregate"]) == 0
  rows = list(csv.DictReader(open(os.path.join(root, "aggregate.csv"))))
  assert [(r["protocol"], r["n"]) for r in rows] == [("loso", "15"), ("lospk", "30")] or \
      [(r["protocol"], r["n"]) for r in rows] == [("lospk", "30"), ("loso", "15")]
  for r in rows:
    v = np.asarray(values[r["protocol"]])
    assert float(r["ua_mean"]) == pytest.approx(v.mean(), abs=1e-4)
    assert float(r["ua_std"]) == pytest.approx(v.std(ddof=1), abs=1e-4)
    assert float(r["wa_mean"]) == pytest.approx(v.mean() - 0.05, abs=1e-4)
  folds = list(csv.DictReader(open(os.path.join(root, "aggregate_folds.csv"))))
  assert len(folds) == 15 and all(r["n"] == "3" for r in folds)
  for r in folds:
    v = np.asarray(values[(r["protocol"], int(r["fold"]))])
    assert float(r["ua_mean"]) == pytest.approx(v.mean(), abs=1e-4)
    assert float(r["ua_std"]) == pytest.approx(v.std(ddof=1), abs=1e-4)
  md = open(os.path.join(root, "aggregate.md")).read()
  assert "### iemocap · protocol loso" in md and "### iemocap · protocol lospk" in md
  lospk = md.split("### iemocap · protocol lospk")[1]
  assert lospk.count("\n| ") == 11  # header + folds 1..10
  assert "| 7 | 57.3 ± 0.3 | [56.6, 58.0] | – | – | 52.3 ± 0.3 | – | 3 | 0 |" in lospk  # 0.5 + 0.07 + 0.003 * (0, 1, 2)


def test_sweeps_take_the_protocol():
  cells = sweep.load_sweep(sweep_file("label_efficiency.py", "iemocap_protocol=lospk,crema_d_split=emobox"))
  assert len(cells) == 5 * 3 * 3 * 11
  iemocap = [c for c in cells if c["axes"]["dataset"] == "iemocap"]
  assert {c["axes"]["fold"] for c in iemocap} == set(range(1, 11))
  assert all(c["axes"]["protocol"] == "lospk" and c["name"].startswith("iemocap/lospk/fold") for c in iemocap)
  crema = [c for c in cells if c["axes"]["dataset"] == "crema_d"]
  assert all(c["name"].startswith("crema_d/emobox/fold0/") and "split=emobox" in c["config"] for c in crema)
  from lanser_jax import config_lib
  c = next(c for c in iemocap if c["axes"]["fold"] == 7)
  assert config_lib.load_experiment(c["config"]).data.dir == \
      "/data/lanser/iemocap/features_lospk_fold7"
  defaults = sweep.load_sweep(sweep_file("label_efficiency.py"))
  assert "iemocap/fold1/none/frac0.1/seed0" in {c["name"] for c in defaults}  # names as before
  base = sweep.load_sweep(sweep_file("baselines.py", "data_root=/d,crema_d_split=tfds"))
  tfds_cell = next(c for c in base if c["axes"]["dataset"] == "crema_d" and c["axes"]["method"] == "text_only")
  assert tfds_cell["baseline"]["data_dir"] == "/d/crema_d_tfds/features"
  assert tfds_cell["baseline"]["labels_dir"] == "/d/crema_d_tfds/labels"
  with pytest.raises(ValueError, match="iemocap_protocol"):
    sweep.load_sweep(sweep_file("label_efficiency.py", "iemocap_protocol=random"))


def test_count_and_cell_follow_the_sweep_file_order(tmp_path, capsys):
  root = str(tmp_path)
  spec = sweep_file("label_efficiency.py")
  only = ["--only=dataset=crema_d", "--only=pretrained=none"]
  assert cli.call(sweep, ["--sweep", spec, "--root", root, "--print", "--count"] + only) == 0
  assert capsys.readouterr().out.strip() == "15"
  assert cli.call(sweep, ["--sweep", spec, "--root", root, "--print", "--all"] + only) == 0
  every = capsys.readouterr().out.strip().splitlines()
  cells = sweep.select(sweep.load_sweep(spec), sweep.parse_only([o.split("=", 1)[1] for o in only]))
  fake_results(root, cells[3]["name"], 0.5, 0.5)  # finished cells keep their index
  assert cli.call(sweep, ["--sweep", spec, "--root", root, "--print", "--count"] + only) == 0
  assert capsys.readouterr().out.strip() == "15"
  assert cli.call(sweep, ["--sweep", spec, "--root", root, "--print", "--cell=7"] + only) == 0
  assert capsys.readouterr().out.strip() == every[7]
  with pytest.raises(app.UsageError, match=r"--cell=15: this sweep has 15 cells \(0\.\.14\)"):
    cli.call(sweep, ["--sweep", spec, "--root", root, "--run", "--cell=15"] + only)


def test_pretraining_run_of_cells(tmp_path):
  le = sweep.load_sweep(sweep_file("label_efficiency.py", f"runs_root={tmp_path}"))
  ps = next(c for c in le if c["axes"]["pretrained"] == "peoples_speech")
  run = str(tmp_path / "pretrain_peoples_speech_fine40-conversation-entailment_hard")
  assert sweep.pretraining_run(ps) == run
  assert sweep.pretraining_run(next(c for c in le if c["axes"]["pretrained"] == "none")) is None
  zs = next(c for c in sweep.load_sweep(sweep_file("baselines.py", f"runs_root={tmp_path}"))
            if c["axes"]["method"] == "zero_shot_peoples_speech")
  assert sweep.pretraining_run(zs) == run
  for cell in (ps, zs):
    with pytest.raises(RuntimeError, match=f"pre-training run {run} is not finished"):
      sweep.check_pretraining_finished(cell)
  fake_results(str(tmp_path), os.path.basename(run), 0.5, 0.5)
  sweep.check_pretraining_finished(ps)  # finished: no error
  sweep.check_pretraining_finished(zs)
  # An explicit checkpoint step is the user's choice and is not checked.
  step = dict(ps, overrides={"init_from": str(tmp_path / "other" / "checkpoints" / "100")})
  assert sweep.pretraining_run(step) is None


@pytest.mark.subprocess
def test_two_task_job_array(tmp_path, synth_dir):
  """launch/slurm_sweep.sbatch as Slurm runs it: one process per array task, told its index by the
  environment. Task 0 runs a real (baseline) cell; task 1's fine-tuning cell restores an unfinished
  pre-training run and fails at once, naming it; resubmitting task 0 skips its finished cell."""
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  root = str(tmp_path / "runs")
  pretrain = str(tmp_path / "pretrain_unfinished")
  os.makedirs(os.path.join(pretrain, "checkpoints"))
  spec = tmp_path / "array.py"
  spec.write_text(
      "def get_sweep(arg=None):\n"
      f"  return [{{'name': 'maj', 'axes': {{'method': 'majority'}},\n"
      f"           'baseline': {{'kind': 'majority', 'data_dir': {synth_dir!r}}}}},\n"
      f"          {{'name': 'ft', 'axes': {{'method': 'finetune'}},\n"
      f"           'config': 'lanser_jax/experiments/finetune_crema_d.py:runlocal,platform=cpu',\n"
      f"           'overrides': {{'data.dir': {synth_dir!r}, 'init_from': {pretrain!r}}}}}]\n")
  env = dict(os.environ, PYTHON=sys.executable, SLURM_SUBMIT_DIR=repo,
             PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
  count = subprocess.run([sys.executable, "-m", "lanser_jax.tools.sweep", f"--sweep={spec}", f"--root={root}",
                          "--print", "--count"], env=env, cwd=repo, capture_output=True, text=True, check=True)
  assert count.stdout.strip() == "2"

  def task(i):
    return subprocess.run(["bash", os.path.join(repo, "launch", "slurm_sweep.sbatch"), str(spec), root],
                          env=dict(env, SLURM_ARRAY_TASK_ID=str(i), SLURM_ARRAY_TASK_COUNT="2"),
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)

  first = task(0)
  assert first.returncode == 0, first.stderr
  assert json.load(open(os.path.join(root, "maj", "results.json")))["baseline"] == "majority"
  assert not os.path.exists(os.path.join(root, "ft"))  # task 0 ran its own cell only
  second = task(1)
  assert second.returncode == 1
  assert f"pre-training run {pretrain} is not finished" in second.stdout
  assert not os.path.exists(os.path.join(root, "ft"))  # failed before anything started
  errors = [json.loads(line) for line in open(os.path.join(root, "sweep_errors.jsonl"))]
  assert [e["name"] for e in errors] == ["ft"] and pretrain in errors[0]["error"]
  again = task(0)
  assert again.returncode == 0 and "1 already done, 0 to run" in again.stdout
  outside = subprocess.run(["bash", os.path.join(repo, "launch", "slurm_sweep.sbatch"), str(spec), root],
                           env={k: v for k, v in env.items() if k != "SLURM_ARRAY_TASK_ID"},
                           capture_output=True, text=True)
  assert outside.returncode == 2 and "--print --count" in outside.stderr
