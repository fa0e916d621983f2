"""Pieces of the end-to-end demo that run in seconds: stage reuse, WER, the majority baseline."""


import numpy as np
import pytest

from lanser_jax.input_pipeline import records
from lanser_jax.demo import report
from lanser_jax.demo.steps import Steps


def test_finished_stages_are_reused(tmp_path):
  stages = Steps(str(tmp_path))
  calls = []
  first = stages.run("a", lambda: calls.append(1) or {"x": 1})
  again = stages.run("a", lambda: calls.append(2) or {"x": 2})
  assert calls == [1] and first["x"] == again["x"] == 1
  assert set(stages.records()) == {"a"} and "wall_s" in stages.records()["a"]


def test_failed_stage_is_not_recorded(tmp_path):
  stages = Steps(str(tmp_path))
  def boom():
    raise RuntimeError("stage failed")
  try:
    stages.run("b", boom)
  except RuntimeError:
    pass
  assert "b" not in stages.records()


def test_word_error_rate():
  assert report.edit_distance("a b c".split(), "a x c d".split()) == 2
  assert report.word_error_rate(["The cat sat.", "Hello"], ["the cat sat", "hello there"]) == 1 / 4


def test_majority_baseline(tmp_path):
  mk = lambda i, label: records.Example(f"u{i}", np.ones((4, 2), np.float16), label)
  records.write_split(str(tmp_path), "train", [mk(i, l) for i, l in enumerate([0, 1, 1, 2])], 1, 2)
  records.write_split(str(tmp_path), "test", [mk(i, l) for i, l in enumerate([0, 1, 2, 2])], 1, 2)
  records.write_dataset_info(str(tmp_path), ["a", "b", "c"], {}, ["train", "test"])
  result = report.majority_baseline(str(tmp_path))
  assert result["majority_class"] == "b"
  assert result["wa"] == 0.25 and np.isclose(result["ua"], 1 / 3)


def _jsonl(path, rows):
  import json
  import os
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)


class KeywordLabeler:
  """A stand-in for the pre-training labeler: ekman7 scores from words of the sentence."""
  def __init__(self):
    from lanser_jax import labelers
    self.label_names = labelers.load_taxonomy("ekman7")

  def score(self, texts):
    out = np.full((len(texts), len(self.label_names)), 0.05, np.float32)
    for i, t in enumerate(texts):
      for j, name in enumerate(self.label_names):
        if name in t:
          out[i, j] = 0.9
    return out


def _backbone_runs(work):
  """Step records and results of a --backbones=conformer_tiny demo (the conformer's pre-training and four
  fine-tunings), as constructed files."""
  import json
  import os
  out = {}
  uas = {"pretrain": 0.4, "finetune_pretrained_0.1": 0.3, "finetune_scratch_0.1": 0.2,
         "finetune_pretrained_1.0": 0.6, "finetune_scratch_1.0": 0.55}
  for step, ua in uas.items():
    d = os.path.join(work, "backbones", "conformer_tiny", *step.split("_", 1))
    os.makedirs(d)
    json.dump({"validation": {"ua": ua}} if step == "pretrain" else {"test": {"ua": ua}},
              open(os.path.join(d, "results.json"), "w"))
    out[f"9_conformer_tiny_{step}"] = {"workdir": d, "wall_s": 1.0, "model": "conformer_tiny", "num_params": 76806}
  return out


def _analysis_outputs(work):
  """What the analysis step leaves in <work>/analysis: its JSON, the per-utterance measures, the figures."""
  import json
  import os
  d = os.path.join(work, "analysis")
  os.makedirs(d)
  probes = {"pretrain": {"f0_mean_hz": {"r2": 0.5}, "prosody.pitch": {"r2": 0.7}},
            "scratch_0.1": {"f0_mean_hz": {"r2": None}, "prosody.pitch": {"r2": 0.2}}}
  json.dump({"probes": probes, "test_fraction": 0.3, "seed": 0, "num_utterances": 4},
            open(os.path.join(d, "analysis.json"), "w"))
  _jsonl(os.path.join(d, "prosody.jsonl"), [{"utt_id": f"u{i}", "f0_mean_hz": 100.0 + 10 * p, "prosody.pitch": p}
                                             for i, p in enumerate([20, 45, 80, 55])])
  for name in ("pca.png", "tsne.png", "probes.png"):
    open(os.path.join(d, name), "wb").write(b"\x89PNG stand-in")


def test_backbones_flag():
  from absl import app
  from lanser_jax import config_lib
  from lanser_jax.demo import end_to_end
  from lanser_jax.demo import report
  from lanser_jax.experiments import common
  # One set of names: the flag's, the experiment files' and the report's.
  assert end_to_end.BACKBONES == common.DEMO_BACKBONES and end_to_end.BACKBONES[0] == report.MAIN_BACKBONE
  st, conformer = "spectrogram_transformer_tiny", "conformer_tiny"
  assert end_to_end.chosen_backbones(["resnet18_w0.25"]) == []
  assert end_to_end.chosen_backbones([st, "resnet18_w0.25", conformer, st]) == [st, conformer]
  with pytest.raises(app.UsageError, match=r"\['resnet50'\] not among"):
    end_to_end.chosen_backbones(["resnet50", st])
  # Each backbone's demo runs: its tiny size, its file's optimiser recipe; data, steps and crops the ResNet's.
  resnet = config_lib.load_experiment("lanser_jax/experiments/demo_finetune.py:fraction=0.1")
  for model, lr_factor in ((conformer, 0.5), (st, 0.25)):  # the backbone names the model it runs
    c = config_lib.load_experiment(f"lanser_jax/experiments/demo_finetune.py:fraction=0.1,"
                                   f"backbone={model}")
    assert (c.model.name, c.model.width, c.sharding.rules) == (model, 1.0, "replicated")
    assert c.optimizer.learning_rate == pytest.approx(resnet.optimizer.learning_rate * lr_factor)
    assert (c.num_train_steps, c.data.crop_frames, c.data.label_fraction) == (60, 200, 0.1)
    pre = config_lib.load_experiment(f"lanser_jax/experiments/demo_pretrain.py:backbone={model}")
    assert pre.model.name == model and pre.num_train_steps == 500
  with pytest.raises(ValueError, match="backbone='vgg'"):
    config_lib.load_experiment("lanser_jax/experiments/demo_pretrain.py:backbone=vgg")


@pytest.mark.cloud
def test_report_has_zero_shot_and_text_only_rows(tmp_path, gcs_url):
  """The report's baseline rows on a constructed demo workdir (no synthesis, ASR or training); the same
  report written into a bucket workdir (the GCS emulator). The workdir also holds a --backbones=conformer_tiny
  demo's runs and the analysis step's outputs, so the backbone table and the analysis section are checked."""
  import json
  import os
  from helpers import TINY_OVERRIDES  # noqa: F401  (conftest sets the fake devices first)
  from builders import make_pretrain_run, write_corpus
  from lanser_jax.engine import metrics
  from lanser_jax.demo import baselines as demo_baselines
  from lanser_jax.demo import corpus
  from lanser_jax import labelers
  work = str(tmp_path)
  names = list(corpus.CREMAD_EMOTIONS)
  lab = os.path.join(work, "labels_labelled", "features")
  test_labels = [0, 1, 2, 3, 4, 5, 5, 3]
  write_corpus(lab, [0, 1, 2, 3, 4, 5, 3], test_labels, names=names, frames=50)
  # Sentences of the test utterances: two carry an emotion word (the demo's are all neutral; a test needs both).
  texts = ["I feel sadness today.", "The surprise party is at noon.", "It is a table."] * 3
  _jsonl(os.path.join(work, "corpus", "labelled", "manifest.jsonl"),
         [{"utt_id": f"test{i}", "audio": "x.wav", "text": texts[i], "split": "test", "label": names[y]}
          for i, y in enumerate(test_labels)] +
         [{"utt_id": "train0", "audio": "x.wav", "text": "anger", "split": "train", "label": "anger"}])
  _jsonl(os.path.join(work, "corpus", "pretrain", "manifest.jsonl"),
         [{"utt_id": "p0", "audio": "p.wav", "text": "I am so happy", "text_emotion": "happiness",
           "prosody_emotion": "happiness"}])
  _jsonl(os.path.join(work, "labels_pretrain", "asr", "transcripts-00000-of-00001.jsonl"),
         [{"utt_id": "p0", "text": "I am so happy"}])
  _jsonl(os.path.join(work, "labels_pretrain", "labels", "labels-00000-of-00001.jsonl"),
         [{"utt_id": "p0", "label": "happiness"}])
  fine = labelers.load_taxonomy("ekman7")
  make_pretrain_run(os.path.join(work, "pretrain"), fine, "surprise", os.path.join(lab, "stats.json"),
                    runner_up="sadness")
  stage_records = {}
  # The main fine-tunings: cells of the features sweep, 3 seeds; every run predicts class 0 (anger) everywhere.
  from lanser_jax.tools import sweep
  cells = []
  for pretrained, init, val_ua in (("weak_labels", "pretrained", 0.5), ("none", "scratch", 0.3)):
    for seed in (0, 1, 2):
      cell = {"name": f"{pretrained}/frac0.1/seed{seed}",
              "axes": {"fold": "0", "pretrained": pretrained, "fraction": 0.1, "seed": seed}}
      d = os.path.join(work, "finetune", cell["name"])
      os.makedirs(d)
      preds = np.array(test_labels) * 0
      cm = metrics.confusion_matrix(np.array(test_labels), preds, 6)
      test = {**metrics.from_confusion(cm, names), "predictions": {
          "utt_ids": [f"test{i}" for i in range(len(test_labels))], "pred": preds.tolist(), "label": test_labels}}
      json.dump({"test": test, "validation": {"ua": val_ua + 0.01 * seed}, "num_train_examples": 7},
                open(os.path.join(d, "results.json"), "w"))
      stage_records[f"6_finetune_{init}_0.1_seed{seed}"] = {"workdir": d, "wall_s": 1.0}
      cells.append(cell)
  sweep.write_sweep_record(os.path.join(work, "finetune"), "features.py:test", cells)
  stage_records.update(_backbone_runs(work))
  _analysis_outputs(work)
  got = demo_baselines.run(work, "sentence_encoder", "", labeler=KeywordLabeler())
  # zero-shot: 'surprise' wins every utterance; restricted: the runner-up 'sadness' -> sad (2 of 8 right).
  assert got["zero_shot"]["all"]["wa"] == 0.0 and got["zero_shot"]["all"]["num_without_prediction"] == 8
  assert got["zero_shot"]["restricted"]["wa"] == pytest.approx(2 / 8)
  # text only: 'surprise' sentences (test1, 4, 7) are unmapped under `all`; `restricted` gives every
  # utterance a mapped class. 'sadness' ones (test0, 3, 6: anger, happy, sad) -> sad: one right.
  assert got["text_only"]["all"]["num_without_prediction"] == 3
  assert got["text_only"]["restricted"]["num_without_prediction"] == 0
  path = report.write_report(work, stage_records, {"labeler_note": "keywords (test)"})
  text = open(path).read()
  assert f"| {report.BASELINE_ROWS['zero_shot']} | {report._pct(got['zero_shot']['restricted']['ua'])} (" in text
  assert f"| {report.BASELINE_ROWS['text_only']} | " in text and "argmax over all seven" in text
  summary = json.load(open(os.path.join(work, "report", "report.json")))
  assert summary["baselines"]["zero_shot"]["restricted"]["wa"] == pytest.approx(2 / 8)
  # Label efficiency over 3 seeds: mean ± std, intervals, the paired comparison in a table and in words.
  assert "| weak_labels | 0.1 | 16.7 ± 0.0 | [16.7, 16.7] | [0.0, 33.3] | – | 12.5 ± 0.0 | 7 | 3 | 0 |" in text
  assert "### Paired comparisons" in text and "Per fold" not in text  # one fold: no per-fold table
  assert "- 10% of the labels: no significant difference: +0.0 points UA" in text
  assert "## 4. Best setting (by mean validation UA): pretrained=weak_labels, fraction=0.1" in text
  assert [c["pretrained"] for c in summary["comparisons"]] == ["weak_labels"]
  assert set(summary["baselines"]) == {"zero_shot", "text_only"}
  # --backbones: a row per backbone, pre-trained vs scratch at 10% and 100% (the ResNet's 100% did not run here).
  assert "| backbone (parameters) | weak-label pre-training, validation UA | 10% pre-trained |" in text
  assert "| conformer_tiny (76,806) | 40.0 | 30.0 | 20.0 | 60.0 | 55.0 |" in text
  resnet = report._pct(json.load(open(os.path.join(work, "finetune", "weak_labels/frac0.1/seed0/results.json")))[
      "test"]["ua"])
  assert f"| resnet18_w0.25 | – | {resnet} | {resnet} | – | – |" in text
  assert [b["backbone"] for b in summary["backbones"]] == ["resnet18_w0.25", "conformer_tiny"]
  walls = [line.split(" | ")[0][2:] for line in text.split("## 7. Wall time")[1].splitlines() if "_" in line]
  assert [w for w in walls if w.startswith("9_")][:2] == [
      "9_conformer_tiny_pretrain", "9_conformer_tiny_finetune_pretrained_0.1"]  # pre-training first
  # The representation analysis: its R² table, the measure-vs-planted check and the figures, copied.
  assert "## 5. What the representations learn" in text and "| planted: pitch (0-100) | 0.70 | 0.20 |" in text
  assert "| F0 mean (Hz, pyin) | pitch (0-100) | 1.00 |" in text
  assert summary["analysis"]["mean_r2_planted"] == {"pretrain": 0.7, "scratch_0.1": 0.2}
  assert os.path.exists(os.path.join(work, "report", "analysis_probes.png"))
  # The demo's workdir may be a bucket URL: the same report, figures and summary written there.
  from lanser_jax.utils import fileio
  bucket_work = fileio.join(gcs_url, "demo")
  fileio.copy_tree(work, bucket_work)
  fileio.rmtree(fileio.join(bucket_work, "report"))
  in_bucket = {k: {**v, "workdir": v["workdir"].replace(work, bucket_work)} for k, v in stage_records.items()}
  bucket_path = report.write_report(bucket_work, in_bucket, {"labeler_note": "keywords (test)"})
  assert bucket_path == fileio.join(bucket_work, "report", "report.md")
  assert fileio.read_text(bucket_path) == text.replace(work, bucket_work)
  assert sorted(fileio.listdir(fileio.join(bucket_work, "report"))) == sorted(os.listdir(os.path.join(work,
                                                                                                     "report")))
  assert fileio.read_json(fileio.join(bucket_work, "report", "report.json"))["baselines"] == summary["baselines"]
