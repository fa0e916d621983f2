"""EmoBox corpora through EmoBox's fold files (lanser_jax/corpora/emobox.py), on fake checkouts whose fold files
the tests write in EmoBox's format (one JSON line per utterance: key, wav, emo, length, sample_rate)."""

import collections
import json
import os

import pytest

from lanser_jax.corpora import emobox, folds, manifests
from lanser_jax.stages import chain

from test_protocols import load_config_module

EMOS = ("Angry", "Happy", "Neutral", "Sad")


def write_line(f, dataset, key, wav, emo):
  f.write(json.dumps({"key": key, "dataset": dataset, "wav": wav, "type": "raw", "sample_rate": 16000,
                      "num_frame": 8000.0, "task": "category", "length": 0.5, "emo": emo, "channel": 1}) + "\n")


def make_checkout(root, dataset="ravdess", actors=6, per_actor=4, num_folds=3, valid=False, audio=True,
                  label_map=None):
  """An EmoBox checkout with data/<dataset>/fold_K lists (leave-actors-out, as EmoBox's RAVDESS) and, when
  `audio`, downloads/<dataset>/... files; returns {key: (fold tested in, label)}."""
  from builders import write_wav
  truth = {}
  utts = []
  for a in range(1, actors + 1):
    for j in range(per_actor):
      key = f"{dataset}-03-01-{j:02d}-01-01-01-{a:02d}"
      wav = f"downloads/{dataset}/Actor_{a:02d}/{key}.wav"
      emo = EMOS[(a + j) % len(EMOS)]
      utts.append((a, key, wav, emo))
      if audio:
        write_wav(os.path.join(root, wav), seconds=0.5, freq=200 + 40 * j)
  for k in range(1, num_folds + 1):
    d = os.path.join(root, "data", dataset, f"fold_{k}")
    os.makedirs(d)
    tested = [u for u in utts if (u[0] - 1) % num_folds == k - 1]
    rest = [u for u in utts if u not in tested]
    lists = {"test": tested, "train": rest[len(rest) // 4:] if valid else rest}
    if valid:
      lists["valid"] = rest[:len(rest) // 4]
    for name, items in lists.items():
      with open(os.path.join(d, f"{dataset}_{name}_fold_{k}.jsonl"), "w") as f:
        for _, key, wav, emo in items:
          write_line(f, dataset, key, wav, emo)
    for _, key, _, emo in tested:
      truth[key] = (k, emo)
  if label_map is not None:
    with open(os.path.join(root, "data", dataset, "label_map.json"), "w") as f:
      json.dump(label_map, f)
  return truth


def test_rows_keep_keys_labels_speakers_and_fold_lists(tmp_path):
  root = str(tmp_path / "EmoBox")
  truth = make_checkout(root)
  rows = list(emobox.rows(root, "ravdess"))
  assert {r.utt_id: r.label for r in rows} == {k: emo for k, (_, emo) in truth.items()}
  assert all(os.path.isfile(r.audio) and r.speaker == f"Actor_{r.utt_id[-2:]}" for r in rows)
  assert emobox.num_folds(root, "ravdess") == 3 and emobox.num_folds(os.path.join(root, "data"), "ravdess") == 3
  for k in range(1, 4):
    a = emobox.assignment(rows, "ravdess", k, root, seed=0, valid_ratio=0.25)
    assert {u for u, s in a.items() if s == "test"} == {u for u, (f, _) in truth.items() if f == k}
    counts = collections.Counter(a.values())
    assert counts["test"] == 8 and counts["validation"] == 4 and counts["train"] == 12  # 25% of the 16 train


def test_valid_list_is_used_and_label_map_applied(tmp_path):
  root = str(tmp_path / "EmoBox")
  make_checkout(root, dataset="msppodcast", num_folds=1, valid=True,
                label_map={e: e.lower() + "_x" for e in EMOS})
  rows = list(emobox.rows(root, "msppodcast"))
  assert {r.label for r in rows} == {e.lower() + "_x" for e in EMOS}
  assert all(r.extra["emo"] in EMOS for r in rows)
  a = emobox.assignment(rows, "msppodcast", 1, root)
  with open(os.path.join(root, "data", "msppodcast", "fold_1", "msppodcast_valid_fold_1.jsonl")) as f:
    valid = {json.loads(line)["key"] for line in f}
  assert {u for u, s in a.items() if s == "validation"} == valid


def test_bad_lines_conflicts_missing_audio_and_wrong_roots(tmp_path):
  root = str(tmp_path / "EmoBox")
  make_checkout(root, num_folds=2)
  with open(os.path.join(root, "data", "ravdess", "fold_1", "ravdess_train_fold_1.jsonl"), "a") as f:
    f.write("{not json\n")
    f.write(json.dumps({"key": "ravdess-x", "wav": "downloads/ravdess/x.wav"}) + "\n")  # no emo
    write_line(f, "ravdess", "ravdess-gone", "downloads/ravdess/gone.wav", "Sad")
  with open(os.path.join(root, "data", "ravdess", "fold_2", "ravdess_train_fold_2.jsonl"), "a") as f:
    write_line(f, "ravdess", "ravdess-03-01-00-01-01-01-01", "downloads/ravdess/Actor_01/other.wav", "Sad")
  out = list(emobox.rows(root, "ravdess"))
  rejected = {r.utt_id.split(" ")[0]: r.reason for r in out if isinstance(r, manifests.RejectedRow)}
  assert len(rejected) == 4, rejected
  assert any(v.startswith("not JSON") for v in rejected.values())
  assert sum("needs string key, wav and emo" in v for v in rejected.values()) == 1
  assert rejected["ravdess-gone"].startswith("missing audio file")
  assert "listed with" in rejected["ravdess-03-01-00-01-01-01-01"]
  with pytest.raises(manifests.CorpusError, match="none of the .* audio files exists .*downloads/"):
    list(emobox.rows(root, "ravdess", audio_root=str(tmp_path / "elsewhere")))
  with pytest.raises(manifests.CorpusError, match=r"no EmoBox corpus 'emodb'.*\['ravdess'\]"):
    list(emobox.rows(root, "emodb"))
  os.remove(os.path.join(root, "data", "ravdess", "fold_2", "ravdess_test_fold_2.jsonl"))
  with pytest.raises(manifests.CorpusError, match="no ravdess_test_fold_2.jsonl"):
    emobox.fold_files(root, "ravdess")


def test_labelling_config_writes_every_fold(tmp_path):
  root = str(tmp_path / "EmoBox")
  truth = make_checkout(root, num_folds=3)
  config = load_config_module("emobox").get_config(f"dataset=ravdess,emobox_dir={root}")
  config.num_pieces = 2
  workdir = str(tmp_path / "work")
  chain.run_stages(config, workdir, "all", (0, 1))
  from stage_helpers import read_records
  for k in range(1, 4):
    d = os.path.join(workdir, folds.features_name("features_emobox", k))
    with open(os.path.join(d, "dataset.json")) as f:
      info = json.load(f)
    assert info["label_names"] == sorted(EMOS) and info["protocol"]["fold"] == k
    test = read_records(d, "test")
    assert set(test) == {u for u, (f, _) in truth.items() if f == k}
    assert {u: info["label_names"][r.label] for u, r in test.items()} == {u: truth[u][1] for u in test}


def test_check_tool_finds_equal_lists_and_a_difference(tmp_path, monkeypatch):
  """lanser_jax/tools/emobox_check.py, the script that compares the adapter with real checkouts, can fail."""
  from lanser_jax.tools import emobox_check
  root = str(tmp_path / "EmoBox")
  make_checkout(root, num_folds=2, audio=False, label_map={e: e.upper() for e in EMOS})
  results = emobox_check.check(root, "ravdess")
  assert [r["fold"] for r in results] == [1, 2] and all(r["ok"] for r in results)
  monkeypatch.setattr(emobox, "emobox_name", lambda names, emo: emo)  # a bug: EmoBox's label map ignored
  assert not any(r["labels_equal"] for r in emobox_check.check(root, "ravdess"))


FEATURES_SWEEP = os.path.join(os.path.dirname(__file__), "..", "..", "lanser_jax", "experiments", "sweeps",
                              "features.py")


def test_sweep_takes_an_emobox_corpus_name(tmp_path, capsys):
  """features.py:emobox=<corpus>,emobox_root=<checkout>: one fold per EmoBox fold, labelled under --root by the
  EmoBox adapter before the cells; each fold's test split is EmoBox's test list, with EmoBox's labels."""
  from lanser_jax.tools import sweep
  from lanser_jax.utils import cli
  from stage_helpers import read_records
  root, runs = str(tmp_path / "EmoBox"), str(tmp_path / "runs")
  truth = make_checkout(root, num_folds=3, label_map={e: e.lower() for e in EMOS})
  spec = f"{FEATURES_SWEEP}:emobox=ravdess,emobox_root={root},fractions=1.0,seeds=0+1"
  cells = sweep.load_sweep(spec, runs)
  assert [c["name"] for c in cells][:2] == ["fold1/none/frac1.0/seed0", "fold1/none/frac1.0/seed1"]
  assert len(cells) == 3 * 2 and {c["axes"]["fold"] for c in cells} == {"fold1", "fold2", "fold3"}
  labels = os.path.join(runs, "labels", "emobox_ravdess")
  assert cells[-1]["overrides"]["data.dir"] == os.path.join(labels, "features_emobox_fold3")
  jobs = sweep.labelling_jobs(cells)
  assert jobs == [{"config": f"lanser_jax/experiments/labeling/emobox.py:dataset=ravdess,emobox_dir={root}",
                   "workdir": labels}]
  assert cli.call(sweep, [f"--sweep={spec}", f"--root={runs}", "--print"]) == 0
  printed = capsys.readouterr().out.splitlines()
  assert printed[0].startswith("python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/emobox.py")
  assert len(printed) == 1 + 6
  # A job-array task does not label: its cell fails with the command to run first.
  with pytest.raises(RuntimeError, match="feature folder .* is missing; label first: lanser-label"):
    sweep.check_features_ready(cells[0])
  sweep.run_labelling(jobs[0], in_process=True, log=lambda _: None)
  assert sweep.labelling_jobs(cells) == []
  for k in range(1, 4):
    d = os.path.join(labels, f"features_emobox_fold{k}")
    with open(os.path.join(d, "dataset.json")) as f:
      names = json.load(f)["label_names"]
    test = read_records(d, "test")
    assert {u: names[r.label] for u, r in test.items()} == {
        u: emo.lower() for u, (fold, emo) in truth.items() if fold == k}
  # Wrong names are one line each, before any work.
  capsys.readouterr()
  for arg, message in ((f"emobox=emodb,emobox_root={root}", r"no EmoBox corpus 'emodb'.*\['ravdess'\]"),
                       ("emobox=ravdess", "needs emobox_root="),
                       (f"emobox=ravdess,emobox_root={root},features=/x", "not both")):
    assert cli.call(sweep, [f"--sweep={FEATURES_SWEEP}:{arg}", f"--root={runs}", "--print"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert __import__("re").search(message, err[0]), err[0]
  with pytest.raises(ValueError, match="give --root"):
    sweep.load_sweep(f"{FEATURES_SWEEP}:emobox=ravdess,emobox_root={root}")


@pytest.mark.slow
def test_emobox_sweep_runs_on_emobox_folds(tmp_path):
  """`lanser-sweep --run` labels the corpus and trains every cell on EmoBox's folds; the aggregate reports it."""
  from lanser_jax.tools import sweep
  from lanser_jax.utils import cli
  root, runs = str(tmp_path / "EmoBox"), str(tmp_path / "runs")
  truth = make_checkout(root, num_folds=2)
  spec = f"{FEATURES_SWEEP}:emobox=ravdess,emobox_root={root},fractions=1.0,seeds=0,steps=2,runlocal"
  assert cli.call(sweep, [f"--sweep={spec}", f"--root={runs}", "--run", "--in_process"]) == 0
  for k in (1, 2):
    with open(os.path.join(runs, f"fold{k}", "none", "frac1.0", "seed0", "results.json")) as f:
      results = json.load(f)
    assert set(results["test"]["predictions"]["utt_ids"]) == {u for u, (f_, _) in truth.items() if f_ == k}
    # EmoBox's train list: 3 actors x 4 labels; its stratified 20% validation takes one utterance per label
    assert results["num_train_examples"] == 12 - 4
  assert cli.call(sweep, [f"--sweep={spec}", f"--root={runs}", "--aggregate"]) == 0
