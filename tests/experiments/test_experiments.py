"""The LanSER experiment files load in every variant; the baselines score constructed examples correctly."""

import json
import os

import numpy as np
import pytest

from lanser_jax.tools import baselines
from lanser_jax import config_lib
from builders import IEMOCAP, make_pretrain_run, write_corpus  # noqa: F401

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
EXP = os.path.join(ROOT, "lanser_jax", "experiments")
FILES = {
    "pretrain_peoples_speech.py": "",
    "pretrain_condensed_movies.py": "",
    "finetune_iemocap.py": "fold=2,",
    "finetune_crema_d.py": "",
}


def load(name, arg):
  return config_lib.load_experiment(os.path.join(EXP, name) + ":" + arg)


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("platform", ["cpu", "gpu", "tpu"])
@pytest.mark.parametrize("runlocal", [False, True])
def test_every_file_loads_in_every_platform(name, platform, runlocal):
  c = load(name, FILES[name] + f"platform={platform}" + (",runlocal" if runlocal else ""))
  base = config_lib.base_config()
  assert set(c.keys()) == set(base.keys())  # no new top-level keys: --config.x overrides stay checked
  assert set(c.data.keys()) == set(base.data.keys())
  if runlocal:
    assert c.model.name == "tiny" and c.num_train_steps <= 40 and c.data.num_workers == 0
  else:
    assert c.model.name == "resnet50"
    assert c.dtype == ("float32" if platform == "cpu" else "bfloat16")
    assert c.batch_size % {"cpu": 1, "gpu": 8, "tpu": 16}[platform] == 0


def test_platform_scales_batch_and_learning_rate():
  gpu, tpu = (load("pretrain_peoples_speech.py", f"platform={p}") for p in ("gpu", "tpu"))
  assert tpu.batch_size == 2 * gpu.batch_size
  assert tpu.optimizer.learning_rate == pytest.approx(2 * gpu.optimizer.learning_rate)
  assert tpu.data.num_workers > 0 and gpu.data.num_workers > 0


def test_ablation_arguments_select_the_labelling_folder():
  base = load("pretrain_peoples_speech.py", "")
  assert base.data.dir == "/data/lanser/peoples_speech/fine40-conversation-entailment/features"
  assert base.data.target == "label"
  c = load("pretrain_peoples_speech.py", "taxonomy=ekman7,soft=True,template=i_feel,labeler=sentence_encoder,"
           "data_root=/d")
  assert c.data.dir == "/d/peoples_speech/ekman7-i_feel-sentence_encoder/features"
  assert c.data.target == "scores"
  assert load("pretrain_condensed_movies.py", "").data.eval_split == ""
  with pytest.raises(ValueError, match="taxonomy"):
    load("pretrain_peoples_speech.py", "taxonomy=plutchik")
  with pytest.raises(KeyError, match="not one of"):
    load("pretrain_peoples_speech.py", "colour=blue")


def test_finetune_arguments():
  scratch = load("finetune_iemocap.py", "fold=3,fraction=0.1,seed=2")
  assert scratch.data.dir == "/data/lanser/iemocap/features_fold3"
  assert scratch.init_from == "" and not scratch.freeze_backbone
  assert (scratch.data.label_fraction, scratch.seed, scratch.data.subset_seed) == (0.1, 2, 2)
  full = load("finetune_iemocap.py", "fold=3,fraction=1.0")
  assert full.num_train_steps > scratch.num_train_steps >= 600  # steps follow the subset size
  probe = load("finetune_crema_d.py", "pretrained=condensed_movies,probe=True,soft=True,runs_root=/r")
  assert probe.init_from == "/r/pretrain_condensed_movies_fine40-conversation-entailment_soft"
  assert probe.freeze_backbone and probe.data.dir.endswith("crema_d/features")
  with pytest.raises(ValueError, match="fold must be 1..5"):
    load("finetune_iemocap.py", "")
  with pytest.raises(ValueError, match="needs a pretrained"):
    load("finetune_crema_d.py", "probe=True")
  with pytest.raises(KeyError):
    load("finetune_crema_d.py", "fold=1")  # CREMA-D has no folds


# ---------------------------------------------------------------------------------------------------
# Baselines on constructed data.


def test_score_counts_missing_predictions_as_wrong():
  r = baselines.score([0, 0, 1, 1], [0, -1, 1, 0], ["a", "b"])
  assert r["wa"] == pytest.approx(0.5) and r["ua"] == pytest.approx(0.5)
  assert r["num_without_prediction"] == 1 and r["classes_absent"] == []
  assert r["mapped_only"]["wa"] == pytest.approx(2 / 3)


def test_majority(tmp_path):
  d = write_corpus(str(tmp_path), train_labels=[2, 2, 2, 0, 1], test_labels=[2, 0, 2, 3])
  r = baselines.run_baseline("majority", str(tmp_path / "run"), data_dir=d)
  assert r["majority_class"] == "sad"
  assert r["test"]["wa"] == pytest.approx(0.5)
  assert r["test"]["ua"] == pytest.approx(1 / 3)  # recall 1 for sad, 0 for neutral and angry
  assert json.load(open(tmp_path / "run" / "results.json"))["test"]["wa"] == pytest.approx(0.5)


def test_text_only_maps_fine_labels(tmp_path):
  from lanser_jax import labelers
  fine = labelers.load_taxonomy("fine40")
  d = write_corpus(str(tmp_path / "f"), [0, 1], test_labels=[1, 1, 2, 3, 0, 0])
  labels_dir = tmp_path / "labels"
  labels_dir.mkdir()
  (labels_dir / "label_names.json").write_text(json.dumps(fine))
  weak = {"test0": "joy",        # happy: right
          "test1": "anger",      # angry: wrong
          "test2": "sadness",    # sad: right
          "test3": "annoyance",  # angry: right
          "test4": "awe"}        # mapped to nothing: wrong; test5 has no weak label: wrong
  (labels_dir / "labels-00000-of-00001.jsonl").write_text("".join(
      json.dumps({"utt_id": u, "label": l, "label_index": fine.index(l)}) + "\n" for u, l in weak.items()))
  r = baselines.text_only(d, str(labels_dir), "iemocap4", argmax="all")  # today's rule; label files without scores
  t = r["test"]
  assert r["taxonomy"] == "fine40"
  assert t["wa"] == pytest.approx(3 / 6)
  assert t["ua"] == pytest.approx(np.mean([0.0, 0.5, 1.0, 1.0]))  # neutral, happy, sad, angry recalls
  assert (t["unmapped"], t["no_weak_label"], t["num_without_prediction"]) == (1, 1, 2)
  assert t["mapped_only"]["wa"] == pytest.approx(3 / 4)


def test_target_classes_spelled_differently_align_by_position():
  # cremad6.txt says 'anger', the CREMA-D feature folder 'angry' (lanser_jax/corpora/emotion.py).
  idx = baselines.target_index("cremad6", ["angry", "disgust", "fear", "happy", "neutral", "sad"])
  assert idx["anger"] == 0 and idx["sad"] == 5


@pytest.mark.slow
def test_zero_shot_maps_the_pretrained_prediction(tmp_path):
  from lanser_jax import labelers
  fine = labelers.load_taxonomy("fine40")
  d = write_corpus(str(tmp_path / "f"), [0, 1], test_labels=[1, 1, 1, 0, 2], frames=50)
  for favourite, expect_wa, expect_unmapped in (("joy", 3 / 5, 0), ("awe", 0.0, 5)):
    run = str(tmp_path / favourite)
    make_pretrain_run(run, fine, favourite, os.path.join(d, "stats.json"))
    r = baselines.zero_shot(d, run, "iemocap4", batch_size=8, argmax="all")
    t = r["test"]
    assert t["wa"] == pytest.approx(expect_wa)
    assert t["unmapped"] == expect_unmapped
    assert t["ua"] == pytest.approx(1 / 3 if favourite == "joy" else 0.0)  # happy recall 1 of 3 present
  assert r["test"]["unmapped_predictions"] == {"awe": 5}


def test_text_only_restricted_argmax_takes_the_best_mapped_label(tmp_path):
  from lanser_jax import labelers
  fine = labelers.load_taxonomy("fine40")
  d = write_corpus(str(tmp_path / "f"), [0, 1], test_labels=[1, 2, 3, 0])  # happy, sad, angry, neutral
  labels_dir = tmp_path / "labels"
  labels_dir.mkdir()
  (labels_dir / "label_names.json").write_text(json.dumps(fine))

  def row(u, ranked):  # scores: the listed labels in decreasing order, the rest 0
    scores = np.zeros(len(fine))
    for rank, label in enumerate(ranked):
      scores[fine.index(label)] = 0.9 - 0.2 * rank
    return {"utt_id": u, "label": ranked[0], "label_index": fine.index(ranked[0]), "scores": scores.tolist()}
  rows = [row("test0", ["awe", "joy"]),          # awe maps to nothing: restricted -> joy = happy (right)
          row("test1", ["sadness", "anger"]),    # sad (right) under both
          row("test2", ["surprise", "fear"])]    # both unmapped for iemocap4: restricted -> the best mapped
  (labels_dir / "labels-00000-of-00001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  r = baselines.text_only(d, str(labels_dir), "iemocap4")
  assert r["argmax"] == "restricted" and r["test"] == r["by_argmax"]["restricted"]
  restricted, everything = r["by_argmax"]["restricted"], r["by_argmax"]["all"]
  assert restricted["unmapped"] == 0 and restricted["num_without_prediction"] == 1  # test3: no weak label
  assert everything["unmapped"] == 2 and everything["num_without_prediction"] == 3
  assert everything["unmapped_predictions"] == {"awe": 1, "surprise": 1}
  assert everything["wa"] == pytest.approx(1 / 4)
  mapping = labelers.load_label_mapping("fine40", "iemocap4")
  best_mapped = max((l for l in fine if l in mapping), key=lambda l: (rows[2]["scores"][fine.index(l)],
                                                                     -fine.index(l)))
  right = 2 + (mapping[best_mapped] == "angry")
  assert restricted["wa"] == pytest.approx(right / 4)
  with pytest.raises(ValueError, match="argmax"):
    baselines.text_only(d, str(labels_dir), "iemocap4", argmax="best")


def test_zero_shot_restricted_argmax(tmp_path):
  from lanser_jax import labelers
  fine = labelers.load_taxonomy("fine40")
  d = write_corpus(str(tmp_path / "f"), [0, 1], test_labels=[2, 2, 1, 0], frames=50)
  run = str(tmp_path / "awe_then_sadness")
  make_pretrain_run(run, fine, "awe", os.path.join(d, "stats.json"), runner_up="sadness")
  r = baselines.zero_shot(d, run, "iemocap4", batch_size=8)
  assert r["argmax"] == "restricted"
  assert r["test"]["wa"] == pytest.approx(2 / 4) and r["test"]["unmapped"] == 0  # sad for all: 2 right
  assert r["by_argmax"]["all"]["wa"] == 0.0 and r["by_argmax"]["all"]["unmapped"] == 4


def test_finetune_protocol_arguments():
  assert load("finetune_iemocap.py", "fold=3").data.dir == "/data/lanser/iemocap/features_fold3"  # loso
  assert load("finetune_iemocap.py", "protocol=lospk,fold=10").data.dir == \
      "/data/lanser/iemocap/features_lospk_fold10"
  assert load("finetune_iemocap.py", "protocol=emobox,fold=2,data_root=/d").data.dir == \
      "/d/iemocap/features_emobox_fold2"
  with pytest.raises(ValueError, match="fold must be 1..5"):
    load("finetune_iemocap.py", "protocol=loso_spkval,fold=6")
  with pytest.raises(ValueError, match="protocol"):
    load("finetune_iemocap.py", "protocol=random,fold=1")
  assert load("finetune_crema_d.py", "").data.dir == "/data/lanser/crema_d/features"
  assert load("finetune_crema_d.py", "split=emobox").data.dir == "/data/lanser/crema_d/features_emobox"
  assert load("finetune_crema_d.py", "split=tfds").data.dir == "/data/lanser/crema_d_tfds/features"
  with pytest.raises(ValueError, match="split"):
    load("finetune_crema_d.py", "split=by_sentence")


# ---------------------------------------------------------------------------------------------------
# The other backbones (lanser_jax/experiments/{pretrain,finetune}_{conformer,spectrogram_transformer}.py).

BACKBONE_FILES = {
    "pretrain_conformer.py": ("", "conformer_s"),
    "pretrain_spectrogram_transformer.py": ("source=condensed_movies,", "spectrogram_transformer_b16"),
    "finetune_conformer.py": ("fold=2,size=m,", "conformer_m"),
    "finetune_spectrogram_transformer.py": ("dataset=crema_d,", "spectrogram_transformer_b16"),
}


@pytest.mark.parametrize("name", sorted(BACKBONE_FILES))
@pytest.mark.parametrize("platform", ["cpu", "gpu", "tpu"])
@pytest.mark.parametrize("runlocal", [False, True])
def test_backbone_files_load_in_every_platform(name, platform, runlocal):
  prefix, model = BACKBONE_FILES[name]
  c = load(name, prefix + f"platform={platform}" + (",runlocal" if runlocal else ""))
  base = config_lib.base_config()
  assert set(c.keys()) == set(base.keys()) and set(c.data.keys()) == set(base.data.keys())
  if runlocal:
    assert c.model.name == model.rsplit("_", 1)[0] + "_tiny" and c.num_train_steps <= 40
    assert c.sharding.rules == "fsdp" and c.sharding.mesh == "data=-1,fsdp=1"
  else:
    assert c.model.name == model
    assert c.dtype == ("float32" if platform == "cpu" else "bfloat16")
    sharded = model == "spectrogram_transformer_b16" and platform != "cpu"
    assert (c.sharding.rules == "fsdp") == sharded
  assert c.optimizer.grad_clip_norm == 1.0 and c.optimizer.weight_decay == 0.05


def test_backbone_finetune_restores_its_own_pretraining_run():
  ps = "pretrain_peoples_speech_fine40-conversation-entailment_hard"
  c = load("finetune_conformer.py", "fold=1,pretrained=peoples_speech,runs_root=/r")
  assert c.init_from == f"/r/{ps}_conformer_s"
  assert load("finetune_spectrogram_transformer.py", "dataset=crema_d,pretrained=peoples_speech,runs_root=/r"
              ).init_from == f"/r/{ps}_spectrogram_transformer_b16"
  resnet = load("finetune_iemocap.py", "fold=1,pretrained=peoples_speech,runs_root=/r")
  assert resnet.init_from == f"/r/{ps}"  # the ResNet-50 files are unchanged
  with pytest.raises(ValueError, match="fold must be 1..5"):
    load("finetune_conformer.py", "")
  with pytest.raises(ValueError, match="no folds"):
    load("finetune_spectrogram_transformer.py", "dataset=crema_d,fold=2")
  with pytest.raises(ValueError, match="size"):
    load("pretrain_spectrogram_transformer.py", "size=l")


def test_backbone_sweep_crosses_backbones_with_fractions():
  from lanser_jax.tools import sweep
  cells = sweep.load_sweep(os.path.join(EXP, "sweeps", "backbones.py") + ":platform=gpu")
  finetune = [c for c in cells if c["axes"]["stage"] == "finetune"]
  assert len(cells) == 3 + len(finetune) and len(finetune) == 3 * 2 * 5 * 6
  grid = {(c["axes"]["backbone"], c["axes"]["fraction"]) for c in finetune}
  assert grid == {(b, f) for b in ("resnet50", "conformer_s", "spectrogram_transformer_b16") for f in (0.1, 0.2, 0.3, 0.5, 1.0)}
  for cell in cells:  # every cell's spec resolves, and names the backbone it says
    c = config_lib.load_experiment(os.path.join(ROOT, cell["config"]))
    assert c.model.name == cell["axes"]["backbone"]
  pretrained = {c["name"] for c in cells if c["axes"]["stage"] == "pretrain"}
  for cell in finetune:
    init_from = config_lib.load_experiment(os.path.join(ROOT, cell["config"])).init_from
    assert not init_from or os.path.basename(init_from) in pretrained


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pretrain_conformer.py", "finetune_spectrogram_transformer.py"])
def test_backbone_runlocal_runs(synth_dir, tmp_path, name):
  """`:runlocal` trains end to end on the synthetic features (cut to 2 steps)."""
  from lanser_jax import train
  c = load(name, ("fold=1," if name.startswith("finetune") else "") + "runlocal,platform=cpu")
  for key, value in {"data.dir": synth_dir, "num_train_steps": 2, "eval_every_steps": 2,
                     "checkpoint_every_steps": 2, "data.crop_frames": 64, "data.eval_hop_frames": 32,
                     "data.test_split": "", "specaugment.max_freq_width": 4}.items():
    config_lib.set_override(c, key, value)
  results = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert results["steps"] == 2 and 0.0 <= results["validation"]["ua"] <= 1.0
