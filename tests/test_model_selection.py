"""Model selection never sees the test set (issue #27 item 7): with the test split's labels permuted, training
chooses the same checkpoint and reports the same validation figures; only the test figures change. Also
the per-utterance predictions results.json keeps for intervals and paired tests."""

import os
import shutil

import numpy as np
import pytest

from helpers import tiny_config
from lanser_jax import train
from lanser_jax.engine import metrics
from lanser_jax.input_pipeline import pipeline, records


def permute_test_labels(src: str, dst: str, seed: int = 0) -> list[int]:
  """A copy of the feature folder whose test split has its labels permuted (features, ids unchanged)."""
  shutil.copytree(src, dst)
  for shard in records.list_shards(dst, "test"):
    os.remove(shard)
  source = pipeline.open_source(src, "test")
  examples = [records.decode(source[i]) for i in range(len(source))]
  labels = np.random.default_rng(seed).permutation([ex.label for ex in examples])
  while np.all(labels == [ex.label for ex in examples]):
    labels = np.roll(labels, 1)
  permuted = [records.Example(ex.utt_id, ex.log_mel, int(y), ex.scores, ex.speaker_id)
              for ex, y in zip(examples, labels)]
  records.write_split(dst, "test", permuted, 1, examples[0].log_mel.shape[1])
  return labels.tolist()


@pytest.mark.slow
def test_selection_and_validation_do_not_depend_on_test_labels(synth_dir, tmp_path):
  permuted_dir = str(tmp_path / "permuted")
  permuted_labels = permute_test_labels(synth_dir, permuted_dir)
  # Evaluations every 5 steps: several checkpoints compete for "best", so the choice is a real one.
  over = {"eval_every_steps": 5, "checkpoint_every_steps": 5, "keep_checkpoints": 4}
  a = train.train_and_evaluate(tiny_config(synth_dir, **over), str(tmp_path / "a"))
  b = train.train_and_evaluate(tiny_config(permuted_dir, **over), str(tmp_path / "b"))
  assert len(a["selection"]["evaluations"]) == 4
  assert a["best_step"] == b["best_step"]
  assert a["selection"] == b["selection"]  # every validation figure of every evaluation, and the rule
  assert a["validation"] == b["validation"]  # the reported validation figures, predictions included
  # The test split was really changed, and scored with the changed labels by the same model.
  assert a["test"]["predictions"]["pred"] == b["test"]["predictions"]["pred"]
  assert b["test"]["predictions"]["label"] == permuted_labels != a["test"]["predictions"]["label"]
  assert a["test"]["confusion_matrix"] != b["test"]["confusion_matrix"]


@pytest.mark.slow
def test_results_keep_per_utterance_predictions(synth_dir, tmp_path):
  results = train.train_and_evaluate(tiny_config(synth_dir, **{"data.label_fraction": 0.5}), str(tmp_path))
  assert results["num_train_examples"] == 48  # half of the 96 training clips, stratified
  for split in ("validation", "test"):
    p = results[split]["predictions"]
    assert len(p["utt_ids"]) == len(p["pred"]) == len(p["label"]) == 21 and p["complete"]
    assert all(u.startswith(f"{split}-") for u in p["utt_ids"])
    assert len(p["speaker"]) == 21 and all(p["speaker"])  # each utterance's speaker, for the speaker bootstrap
    cm = metrics.confusion_matrix(np.asarray(p["label"]), np.asarray(p["pred"]), 4)
    assert cm.tolist() == results[split]["confusion_matrix"]  # the predictions are those the metrics count
