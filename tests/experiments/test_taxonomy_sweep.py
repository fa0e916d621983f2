"""The taxonomy sweep: cell counts, every cell's config resolves (a taxonomy file included), fine-tuning cells
start from their own taxonomy's pre-training run, and the aggregate has one line per taxonomy."""

import json
import os

import pytest

from lanser_jax import config_lib
from lanser_jax.tools import sweep
from lanser_jax.utils import cli

SPEC = os.path.join(os.path.dirname(__file__), "..", "..", "lanser_jax", "experiments", "sweeps", "taxonomy.py")


def test_cell_counts():
  assert len(sweep.load_sweep(SPEC)) == (2 + 1) * 3 * 3 * 6  # (taxonomies + scratch) x fractions x seeds x 6
  assert len(sweep.load_sweep(SPEC + ":stage=pretrain")) == 2
  cells = sweep.load_sweep(SPEC + ":taxonomies=fine40+ekman7+/t/mine.txt,sources=peoples_speech+"
                           "condensed_movies,fractions=0.1+1.0")
  assert len(cells) == (3 * 2 + 1) * 2 * 3 * 6
  assert {c["axes"]["pretrained"] for c in cells} == {"none"} | {
      f"{s}:{t}" for s in ("peoples_speech", "condensed_movies") for t in ("fine40", "ekman7", "mine")}
  assert len(sweep.load_sweep(SPEC + ":stage=pretrain,taxonomies=fine40+/t/mine.txt,"
                                     "sources=peoples_speech+condensed_movies")) == 4
  with pytest.raises(ValueError, match="same name"):
    sweep.load_sweep(SPEC + ":taxonomies=/a/x.txt+/b/x.txt")
  with pytest.raises(ValueError, match="taxonomy file"):
    sweep.load_sweep(SPEC + ":taxonomies=fine41")


def test_every_cell_config_resolves_and_chains(tmp_path):
  arg = "taxonomies=fine40+ekman7+/t/mine.txt,platform=cpu,data_root=/d,runs_root=/r"
  pretrain = {c["name"]: c for c in sweep.load_sweep(SPEC + ":stage=pretrain," + arg)}
  for cell in pretrain.values():
    c = config_lib.load_experiment(cell["config"])
    assert c.data.dir == f"/d/peoples_speech/{cell['axes']['taxonomy']}-conversation-entailment/features"
  cells = sweep.load_sweep(SPEC + ":" + arg)
  seen = set()
  for cell in cells:
    c = config_lib.load_experiment(cell["config"])  # every cell, ~160 loads
    if cell["axes"]["pretrained"] == "none":
      assert not c.get("init_from")
    else:
      run_name = os.path.relpath(c.init_from, "/r")
      assert run_name in pretrain  # starts from the pre-training cell of its own taxonomy
      assert pretrain[run_name]["axes"]["taxonomy"] == cell["axes"]["pretrained"].split(":")[1]
    seen.add(cell["axes"]["pretrained"])
  assert seen == {"none", "peoples_speech:fine40", "peoples_speech:ekman7", "peoples_speech:mine"}
  scratch = [c["name"] for c in cells if c["axes"]["pretrained"] == "none"]
  label_efficiency = {c["name"] for c in sweep.load_sweep(os.path.join(os.path.dirname(SPEC),
                                                                       "label_efficiency.py"))}
  assert set(scratch) <= label_efficiency  # shared with the label-efficiency sweep under one --root


def test_aggregate_one_line_per_taxonomy(tmp_path):
  root = str(tmp_path)
  cells = sweep.load_sweep(SPEC + ":fractions=0.1+1.0")
  for i, cell in enumerate(cells):
    os.makedirs(os.path.join(root, cell["name"]))
    ua = {"none": 0.4, "peoples_speech:fine40": 0.6, "peoples_speech:ekman7": 0.5}[cell["axes"]["pretrained"]]
    with open(os.path.join(root, cell["name"], "results.json"), "w") as f:
      json.dump({"test": {"ua": ua + 0.01 * cell["axes"]["seed"], "wa": ua}}, f)
  assert cli.call(sweep, ["--sweep", SPEC + ":fractions=0.1+1.0", "--root", root, "--aggregate"]) == 0
  rows = sweep.aggregate(root, cells)
  assert len(rows) == 2 * 3 * 2  # dataset x pretrained x fraction
  by = {(r["dataset"], r["pretrained"], r["fraction"]): r for r in rows}
  row = by[("iemocap", "peoples_speech:ekman7", 0.1)]
  assert row["n"] == 5 * 3 and row["ua_mean"] == pytest.approx(0.51)
  assert os.path.getsize(os.path.join(root, "ua_vs_fraction.png")) > 1000
  assert "peoples_speech:fine40" in open(os.path.join(root, "aggregate.md")).read()
