"""Every experiment and sweep file resolves, in every variant tests/experiment_snapshot.py lists, to the
configs, cells and errors recorded in tests/experiment_digests.json; a change to one value is caught, and a
listed rename (--renames) excuses only what it renames."""

import copy
import json
import os

import experiment_snapshot as snapshot_lib  # tests/ is on sys.path (pytest prepends it)

import pytest


@pytest.fixture(scope="module")
def snap():
  return snapshot_lib.snapshot()


def test_every_variant_resolves_as_recorded(snap):
  with open(snapshot_lib.DIGESTS) as f:
    recorded = json.load(f)
  now = snapshot_lib.digests(snap)
  changed = snapshot_lib.differences(recorded, now)
  assert not changed, ("resolved configs changed; see which variant with `python tests/experiment_snapshot.py "
                       f"--compare=<a dump written by --out on main>`: {changed}")
  assert len(snap["experiments"]) > 1000 and len(snap["sweeps"]) == sum(map(len, snapshot_lib.SWEEP_ARGS.values()))


def test_one_changed_value_is_caught(snap):
  spec = "lanser_jax/experiments/finetune_iemocap.py:fold=1"
  assert snap["experiments"][spec]["ok"]["optimizer"]["learning_rate"] > 0
  changed = copy.deepcopy(snap)
  changed["experiments"][spec]["ok"]["optimizer"]["learning_rate"] *= 1 + 1e-12
  assert snapshot_lib.differences(snap, changed) == [f"experiments {spec}: differs"]
  assert snapshot_lib.differences(snapshot_lib.digests(snap), snapshot_lib.digests(changed)) == [
      "experiments lanser_jax/experiments/finetune_iemocap.py: differs"]


def test_the_data_root_comes_from_the_environment(monkeypatch):
  from lanser_jax import config_lib
  path = os.path.join(snapshot_lib.ROOT, "lanser_jax", "experiments", "finetune_iemocap.py")
  monkeypatch.setenv("LANSER_DATA_ROOT", "/elsewhere")
  c = config_lib.load_experiment(path + ":fold=1,pretrained=peoples_speech")
  assert c.data.dir == "/elsewhere/iemocap/features_fold1"
  assert c.init_from == "/elsewhere/runs/pretrain_peoples_speech_fine40-conversation-entailment_hard"
  c = config_lib.load_experiment(path + ":fold=1,data_root=/arg")  # the argument wins over the environment
  assert c.data.dir == "/arg/iemocap/features_fold1"


def test_renames_excuse_only_what_they_rename(snap):
  spec = "lanser_jax/experiments/finetune_conformer.py:fold=1"
  before = {"experiments": {spec: snap["experiments"][spec]}}
  after = copy.deepcopy(before)
  after["experiments"][spec]["ok"]["model"]["name"] = "conformer_small"
  pairs = [(r"\bconformer_s\b", "conformer_small")]
  assert snapshot_lib.differences(before, after) == [f"experiments {spec}: differs"]
  assert snapshot_lib.differences(snapshot_lib.renamed(before, pairs), after) == []
  after["experiments"][spec]["ok"]["num_train_steps"] += 1  # a change that is no rename still shows
  assert snapshot_lib.differences(snapshot_lib.renamed(before, pairs), after) == [f"experiments {spec}: differs"]
