"""Your own corpus (lanser_jax/experiments/labeling/custom.py): a CSV or JSONL list, or a folder per label, to
speaker-independent feature folds; labels outside the declared set and wrong columns stop with one line."""

import collections
import csv
import json
import os
import subprocess
import sys

import pytest

from lanser_jax import corpora
from lanser_jax.corpora import folds, manifests
from lanser_jax.stages import chain

from builders import write_wav
from stage_helpers import read_records
from test_protocols import ROOT, load_config_module

LABELS = ("angry", "happy", "neutral", "sad")


def write_list(root, speakers=6, per_speaker=4, header=("path", "label", "speaker"), jsonl=False):
  """A list of `speakers` x `per_speaker` clips (0.5 s each) under root/clips; returns its path."""
  rows = []
  for s in range(speakers):
    for j in range(per_speaker):
      rel = f"clips/s{s}_{j}.wav"
      write_wav(os.path.join(root, rel), seconds=0.5, freq=200 + 30 * j)
      rows.append((rel, LABELS[(s + j) % len(LABELS)], f"spk{s}"))
  path = os.path.join(root, "list.jsonl" if jsonl else "list.csv")
  with open(path, "w", newline="") as f:
    if jsonl:
      for r in rows:
        f.write(json.dumps(dict(zip(header, r))) + "\n")
    else:
      w = csv.writer(f)
      w.writerow(header)
      w.writerows(rows)
  return path


def test_csv_to_speaker_folds_every_clip_tested_once(tmp_path):
  path = write_list(str(tmp_path / "corpus"))
  config = load_config_module("custom").get_config(f"path={path},folds=3")
  config.num_pieces = 2
  workdir = str(tmp_path / "work")
  summary = chain.run_stages(config, workdir, "all", (0, 1))
  assert summary["in"] == 24 and summary["written"] == 24 and summary["balanced"]
  tested = collections.Counter()
  for k in range(1, 4):
    d = os.path.join(workdir, folds.features_name("features_speaker_kfold", k))
    with open(os.path.join(d, "dataset.json")) as f:
      info = json.load(f)
    assert info["label_names"] == sorted(LABELS) and info["protocol"]["name"] == "speaker_kfold"
    by_split = {s: read_records(d, s) for s in ("train", "validation", "test")}
    speakers = {s: {r.speaker_id for r in recs.values()} for s, recs in by_split.items()}
    assert all(speakers.values()) and not (speakers["train"] & speakers["test"])
    assert not (speakers["validation"] & (speakers["train"] | speakers["test"]))
    tested.update(list(by_split["test"]))
    for recs in by_split.values():  # labels from the list, by name
      assert all(info["label_names"][r.label] == LABELS[(int(u[1]) + int(u[3])) % 4] for u, r in recs.items())
  assert len(tested) == 24 and set(tested.values()) == {1}


def test_declared_labels_stop_with_every_unexpected_label(tmp_path):
  path = write_list(str(tmp_path / "corpus"))
  c = load_config_module("custom").get_config(f"path={path},labels=angry|happy,fold=1")
  with pytest.raises(manifests.CorpusError,
                     match=r"12 of 24 rows have labels outside .*\['angry', 'happy'\]: \{'neutral': 6, 'sad': 6\}"):
    chain.run_stages(c, str(tmp_path / "w"), "manifest", (0, 1))
  assert not os.path.exists(tmp_path / "w" / "manifest" / "summary.json")  # the stage is not done: a rerun redoes it
  # Mapped: 'neutral' renamed into the declared set, 'sad' dropped (listed as rejected with the reason).
  c = load_config_module("custom").get_config(
      f"path={path},labels=angry|happy|calm,fold=1,label_map=neutral:calm|sad:")
  chain.run_stages(c, str(tmp_path / "w"), "manifest", (0, 1))
  rows = list(manifests.read_manifest(str(tmp_path / "w" / "manifest" / "manifest.jsonl")))
  assert collections.Counter(r.label for r in rows) == {"angry": 6, "happy": 6, "calm": 6}
  with open(tmp_path / "w" / "manifest" / "errors.jsonl") as f:
    assert sum("dropped by manifest.label_map" in json.loads(line)["reason"] for line in f) == 6


def test_jsonl_list_columns_map_and_folder_tree(tmp_path):
  path = write_list(str(tmp_path / "corpus"), header=("file", "emotion", "speaker"), jsonl=True)
  with pytest.raises(manifests.CorpusError, match=r"no 'audio' \(or 'path'\) column; the list has "
                                                  r"\['emotion', 'file', 'speaker'\], expected audio plus"):
    list(corpora.rows({"adapter": "list", "root": path}))
  rows = list(corpora.rows({"adapter": "list", "root": path, "columns": {"audio": "file", "label": "emotion"}}))
  assert len(rows) == 24 and all(isinstance(r, manifests.Row) and r.label in LABELS and r.speaker for r in rows)
  tree = tmp_path / "tree"
  for j in range(8):
    write_wav(str(tree / LABELS[j % 4] / f"c{j}.wav"), seconds=0.3)
  config = load_config_module("custom").get_config(f"path={tree},protocol=utterance_holdout,test_ratio=0.25")
  tree_rows = list(corpora.rows(config.manifest))
  assert sorted(r.label for r in tree_rows) == sorted(LABELS * 2)
  assert config.features.protocol.name == "utterance_holdout"


@pytest.mark.subprocess
def test_cli_prints_one_line_for_a_corpus_error(tmp_path):
  path = write_list(str(tmp_path / "corpus"), speakers=2, per_speaker=4)
  cmd = [sys.executable, "-m", "lanser_jax.stages.main",
         f"--config=lanser_jax/experiments/labeling/custom.py:path={path},labels=angry", f"--workdir={tmp_path / 'w'}"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "{'happy': 2, 'neutral': 2, 'sad': 2}" in errors[0], proc.stderr[-2000:]


def test_missing_or_empty_paths_are_one_line(tmp_path):
  custom = load_config_module("custom")
  for arg, message in (("", "manifest.root is empty: name the audio folder"),
                       (f"path={tmp_path / 'nope'}", "nope: no such folder"),
                       (f"path={tmp_path / 'nope.csv'}", "nope.csv: no such list file")):
    with pytest.raises(manifests.CorpusError, match=message):
      list(corpora.rows(custom.get_config(arg).manifest))
