"""Non-finite values in restored parameters and evaluation logits are refused naming the array or utterance; an
init_from backbone trained on other features than the new data is refused naming both settings."""

import json
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest

from helpers import tiny_config
from lanser_jax.engine import checkpointing, value_checks
from lanser_jax.input_pipeline import pipeline, synthetic
from lanser_jax import train


def _save_state(path, bias):
  ocp.PyTreeCheckpointer().save(path, {
      "params": {"dense": {"kernel": np.ones((3, 4), np.float32), "bias": np.asarray(bias, np.float32)}},
      "batch_stats": {}})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_parameters_are_refused_at_load(tmp_path, monkeypatch, bad):
  monkeypatch.setattr(checkpointing, "RETRY_WAITS_S", ())
  state = str(tmp_path / "7" / "state")
  _save_state(state, [0.0, bad, 0.0, 0.0])
  with pytest.raises(checkpointing.CheckpointError) as e:
    checkpointing.load_variables(state)
  assert str(e.value) == (f"checkpoint step 7 ({tmp_path / '7'}) is damaged: array params.dense.bias holds 1 NaN "
                          "or infinite values (first at index [1]): not a state training saves")


def test_finite_parameters_load(tmp_path):
  state = str(tmp_path / "7" / "state")
  _save_state(state, [0.0, 1.0, 0.0, 0.0])
  loaded = checkpointing.load_variables(state)
  np.testing.assert_array_equal(loaded["params"]["dense"]["bias"], [0, 1, 0, 0])


def test_non_finite_logits_name_the_split_and_utterance():
  eval_set = pipeline.EvalSet("/data/features", "validation", np.arange(3), ["a", "b", "c"],
                              np.zeros(3, np.int32), [(0, 0), (1, 0), (2, 0)], 10)
  train.check_finite_logits(np.zeros((3, 4), np.float32), eval_set)
  logits = np.zeros((3, 4), np.float32)
  logits[1, 2] = np.nan
  logits[2, 0] = -np.inf
  with pytest.raises(value_checks.NonFiniteValueError) as e:
    train.check_finite_logits(logits, eval_set)
  assert str(e.value).startswith("evaluation of split 'validation' (/data/features): the logits of 2 utterances "
                                 "are NaN or infinite; first here: b;")


def _run_folder(root, feature, bins):
  """The part of a training workdir that init_from reads: data/dataset.json, data/stats.json, a step."""
  os.makedirs(root / "data")
  os.makedirs(root / "checkpoints" / "10" / "state")
  json.dump({"feature": feature}, open(root / "data" / "dataset.json", "w"))
  json.dump({"mean": [0.0] * bins, "std": [1.0] * bins}, open(root / "data" / "stats.json", "w"))
  return str(root / "checkpoints" / "10" / "state")


FEATURE = {"type": "log_mel", "sample_rate": 16000, "hop_ms": 10.0, "hop_length": 160, "num_mel_bins": 64,
           "log_floor": 1e-6, "dtype": "float16"}


def test_init_from_features_must_match(tmp_path):
  state = _run_folder(tmp_path / "pre", FEATURE, 64)
  value_checks.check_init_from_features(state, "/new", dict(FEATURE), 64)  # same settings: passes
  other = {**FEATURE, "sample_rate": 8000, "hop_length": 80, "num_mel_bins": 32}
  with pytest.raises(ValueError) as e:
    value_checks.check_init_from_features(state, "/new", other, 32)
  assert str(e.value).startswith(
      f"config.init_from: the backbone's run {tmp_path / 'pre'} was trained on other features than "
      "config.data.dir /new: sample_rate 16000 vs 8000; hop_length 160 vs 80; num_mel_bins 64 vs 32; "
      "normalisation statistics over 64 vs 32 mel bins (from ")


def test_init_from_a_bare_checkpoint_is_not_compared(tmp_path):
  os.makedirs(tmp_path / "copied" / "state")
  value_checks.check_init_from_features(str(tmp_path / "copied" / "state"), "/new", FEATURE, 32)


@pytest.mark.slow
def test_training_refuses_init_from_a_run_of_other_features(synth_dir, tmp_path):
  pre = str(tmp_path / "pre")
  train.train_and_evaluate(tiny_config(synth_dir, num_train_steps=10, eval_every_steps=10), pre)
  small = str(tmp_path / "small")  # 16 mel bins at 8 kHz: a ResNet's parameters fit either
  synthetic.write_synthetic(small, num_classes=4, mel_bins=16, num_train=32, num_eval=8, min_frames=20,
                            max_frames=100, num_shards=1, seed=1)
  info = json.load(open(os.path.join(small, "dataset.json")))
  info["feature"]["sample_rate"] = 8000
  json.dump(info, open(os.path.join(small, "dataset.json"), "w"))
  workdir = str(tmp_path / "tuned")
  with pytest.raises(ValueError) as e:
    train.train_and_evaluate(tiny_config(small, num_train_steps=10, init_from=pre), workdir)
  assert "sample_rate 16000 vs 8000; num_mel_bins 32 vs 16" in str(e.value)
  assert not os.path.exists(os.path.join(workdir, "results.json"))
