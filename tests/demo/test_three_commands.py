"""Your own corpus in three commands (docs/corpora.md): lanser-label on a CSV of path,label,speaker, lanser-sweep
over its speaker folds, lanser-report on the sweep, each as its own process, on a tiny eSpeak NG corpus."""

import csv
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("espeakng_loader")

from lanser_jax.demo import corpus  # pylint: disable=wrong-import-position
from stage_helpers import read_records  # pylint: disable=wrong-import-position

pytestmark = [pytest.mark.slow, pytest.mark.subprocess, pytest.mark.needs_model]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMOTIONS = ("angry", "happy", "neutral", "sad")


def _command(args, timeout=600):
  proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
  return proc


def test_csv_to_cross_validated_sweep_and_report(tmp_path):
  # 6 speakers x 1 sentence x 4 emotions = 24 clips: the corpus (120 clips) with 1 sentence of 5. Each
  # fold trains on 2 speakers (8 clips), so that half of them (4, one per label) is fewer than all.
  list_path = corpus.build_list_corpus(str(tmp_path / "my_corpus"), seed=0, num_sentences=1, num_workers=1)
  labels, root = str(tmp_path / "labels"), str(tmp_path / "runs")

  # 1. lanser-label: 2-fold leave-speakers-out cross-validation, one feature folder per fold.
  label = _command(["lanser_jax.stages.main",
                    f"--config=lanser_jax/experiments/labeling/custom.py:path={list_path},folds=2",
                    f"--workdir={labels}"])
  assert "utterances in 24 = written 24 + rejected 0" in label.stderr
  tested = {}
  for k in (1, 2):
    folder = os.path.join(labels, f"features_speaker_kfold_fold{k}")
    info = json.load(open(os.path.join(folder, "dataset.json")))
    assert info["label_names"] == sorted(EMOTIONS) and info["protocol"]["fold"] == k
    tested[f"fold{k}"] = set(read_records(folder, "test"))
  assert not tested["fold1"] & tested["fold2"] and len(tested["fold1"] | tested["fold2"]) == 24
  # 2. lanser-sweep: the labelling workdir as it is; folds named by dataset.json, seeded, fractions.
  spec = f"lanser_jax/experiments/sweeps/features.py:features={labels},fractions=0.5+1.0,seeds=0,steps=3,runlocal"
  run = _command(["lanser_jax.tools.sweep", f"--sweep={spec}", f"--root={root}", "--run"])
  assert "sweep: 4 cells, 0 already done, 4 to run" in run.stdout and "ran 4, failed 0" in run.stdout
  clips = {}
  for fold in ("fold1", "fold2"):
    for fraction in ("0.5", "1.0"):
      results = json.load(open(os.path.join(root, fold, "none", f"frac{fraction}", "seed0", "results.json")))
      assert results["test"]["label_names"] == sorted(EMOTIONS)
      assert set(results["test"]["predictions"]["utt_ids"]) == tested[fold]
      clips[fold, fraction] = results["num_train_examples"]
  assert all(clips[fold, "0.5"] == 4 and clips[fold, "1.0"] == 8 for fold in ("fold1", "fold2")), clips
  # 3. lanser-report: the table with intervals, per fold, and the figures.
  report = _command(["lanser_jax.tools.report", root])
  text = open(os.path.join(root, "report", "report.md")).read()
  assert report.stdout.startswith(text.rstrip("\n")[:200])
  assert "| pretrained | fraction |" in text and "Best setting (by mean validation UA)" in text
  rows = {r["fraction"]: r for r in csv.DictReader(open(os.path.join(root, "report", "aggregate.csv")))}
  assert set(rows) == {"0.5", "1.0"} and all(r["n"] == "2" for r in rows.values())
  for png in ("ua_vs_fraction.png", "confusion_matrix.png"):
    assert os.path.getsize(os.path.join(root, "report", png)) > 5000
