""""Best" is the checkpoint with the best validation metric: kept, reported, loaded and resumed as such.

The validation metric is made to peak before the last evaluation by replacing `train.evaluate` with a table
of scores by the state's step: the loop, the checkpoint manager, the final evaluation, results.json and
`lanser_jax.load` run unchanged around it, and the final evaluation of the restored step reads that step's
score from the same table, so a wrong restore shows as a wrong number.
"""

import json
import os

import jax
import numpy as np
import pytest

from helpers import tiny_config
from lanser_jax.engine import checkpointing
from lanser_jax.serving import classifier
from lanser_jax import train

RUN = {"num_train_steps": 40, "eval_every_steps": 10, "checkpoint_every_steps": 10, "log_every_steps": 10,
       "keep_checkpoints": 1}
PEAK_EARLY = {10: 0.50, 20: 0.90, 30: 0.70, 40: 0.60}


def _scores_by_step(monkeypatch, table):
  def evaluate(eval_fn, state, eval_set, *args, **kwargs):
    step = int(jax.device_get(state.step))
    score = table[step] if eval_set.split == "validation" else table[step] - 0.05  # test: another number
    return {"wa": score, "ua": score, "macro_f1": score, "num_examples": 21}
  monkeypatch.setattr(train, "evaluate", evaluate)


def _params(workdir, step):
  return checkpointing.load_variables(checkpointing.resolve_state_path(workdir, step))


class _Killed(Exception):
  pass


def _kill_after(monkeypatch, stop_step):
  real_save = checkpointing.save

  def save_then_die(manager, step, *args, **kwargs):
    real_save(manager, step, *args, **kwargs)
    if step == stop_step:
      manager.wait_until_finished()
      raise _Killed(step)
  monkeypatch.setattr(checkpointing, "save", save_then_die)
  return real_save


def test_peak_before_the_last_evaluation_is_kept_reported_and_loaded(synth_dir, tmp_path, monkeypatch):
  _scores_by_step(monkeypatch, PEAK_EARLY)
  workdir = str(tmp_path / "run")
  results = train.train_and_evaluate(tiny_config(synth_dir, **RUN), workdir)
  assert results["best_step"] == 20 and results["steps"] == 40
  assert results["validation"]["step"] == 20 and results["validation"]["ua"] == 0.90
  assert results["test"]["step"] == 20 and results["test"]["ua"] == pytest.approx(0.85)
  with open(os.path.join(workdir, "results.json")) as f:
    written = json.load(f)
  assert written["best_step"] == 20
  assert [(e["step"], e["ua"]) for e in written["selection"]["evaluations"]] == sorted(PEAK_EARLY.items())
  assert written["selection"]["metric"] == "ua" and "ties: the earlier step" in written["selection"]["rule"]
  # keep_checkpoints=1: the latest and the best are on disk, nothing else.
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int) == ["20", "40"]
  assert checkpointing.resolve_state_path(workdir, "best").endswith("/checkpoints/20/state")
  assert classifier.load(workdir).step == 20  # the default of load / predict / embed
  assert classifier.load(workdir, "latest").step == 40
  # init_from's default (init_from_step="best") starts from step 20's backbone.
  best, latest = _params(workdir, 20), _params(workdir, 40)
  params, _ = checkpointing.init_backbone_from(workdir, "best", jax.tree.map(np.zeros_like, best["params"]),
                                               best["batch_stats"])
  np.testing.assert_array_equal(params["stem_conv"]["kernel"], best["params"]["stem_conv"]["kernel"])
  assert not np.array_equal(best["params"]["stem_conv"]["kernel"], latest["params"]["stem_conv"]["kernel"])


def test_equal_scores_choose_the_earlier_step(synth_dir, tmp_path, monkeypatch):
  _scores_by_step(monkeypatch, {10: 0.5, 20: 0.8, 30: 0.8, 40: 0.6})
  results = train.train_and_evaluate(tiny_config(synth_dir, **RUN), str(tmp_path / "run"))
  assert results["best_step"] == 20 and results["validation"]["step"] == 20


@pytest.mark.parametrize("killed_after", [10, 30])  # before the peak, and after it
def test_resumed_run_keeps_the_best_step(synth_dir, tmp_path, monkeypatch, killed_after):
  _scores_by_step(monkeypatch, PEAK_EARLY)
  workdir = str(tmp_path / "run")
  real_save = _kill_after(monkeypatch, killed_after)
  with pytest.raises(_Killed):
    train.train_and_evaluate(tiny_config(synth_dir, **RUN), workdir)
  monkeypatch.setattr(checkpointing, "save", real_save)
  results = train.train_and_evaluate(tiny_config(synth_dir, **RUN), workdir)
  assert results["best_step"] == 20 and results["validation"]["ua"] == 0.90
  # The evaluations before the interruption travelled with the checkpoint: the list is whole and in order.
  assert [e["step"] for e in results["selection"]["evaluations"]] == [10, 20, 30, 40]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int) == ["20", "40"]


def test_run_without_validation_uses_and_names_the_final_step(synth_dir, tmp_path):
  workdir = str(tmp_path / "run")
  results = train.train_and_evaluate(tiny_config(synth_dir, **RUN, **{"data.eval_split": ""}), workdir)
  assert results["best_step"] == 40 and results["test"]["step"] == 40
  assert results["selection"]["rule"] == "no validation split: the final step"
  assert results["selection"]["evaluations"] == []
  assert checkpointing.resolve_state_path(workdir, "best").endswith("/checkpoints/40/state")


def test_unknown_best_metric_fails_before_any_work(synth_dir, tmp_path):
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match=r"config.best_metric='accuracy': evaluation produces wa, ua, macro_f1"):
    train.train_and_evaluate(tiny_config(synth_dir, best_metric="accuracy"), str(workdir))
  assert not workdir.exists()


def test_checksums_are_those_of_the_saved_arrays():
  """The device checksum (at save) and the host checksum (at restore) agree for every dtype a state holds,
  and one flipped bit anywhere changes it."""
  import jax.numpy as jnp
  rng = np.random.default_rng(0)
  arrays = {"f32": rng.normal(size=(3, 5, 7)).astype(np.float32), "bf16": jnp.asarray(rng.normal(size=(9,)),
            jnp.bfloat16), "f16": rng.normal(size=(4, 4)).astype(np.float16), "i32": np.arange(11, dtype=np.int32),
            "u8": np.arange(5, dtype=np.uint8), "b": np.array([True, False, True]), "scalar": np.int32(7)}
  device = checkpointing.state_checksums({k: jnp.asarray(v) for k, v in arrays.items()})
  for k, v in arrays.items():
    host = np.asarray(jax.device_get(jnp.asarray(v)))
    assert checkpointing.host_checksum(host) == device[k], k
  x = arrays["f32"].copy()
  flipped = x.view(np.uint32).copy()
  for i in range(flipped.size):
    for bit in (0, 17, 31):
      y = flipped.copy().reshape(-1)
      y[i] ^= np.uint32(1 << bit)
      assert checkpointing.host_checksum(y.view(np.float32)) != device["f32"]


def test_preempted_run_returns_what_it_did_and_resumes(synth_dir, tmp_path, monkeypatch, caplog):
  """A preemption signal after step 20's save: the call returns a flagged partial result (no results.json);
  the same call again finishes from step 20."""
  import logging
  import orbax.checkpoint as ocp
  _scores_by_step(monkeypatch, PEAK_EARLY)
  monkeypatch.setattr(ocp.CheckpointManager, "reached_preemption", lambda self, step: step == 20)
  workdir = str(tmp_path / "run")
  with caplog.at_level(logging.INFO):
    partial = train.train_and_evaluate(tiny_config(synth_dir, **RUN), workdir)
  assert partial["preempted"] is True and partial["steps"] == 20
  assert [e["step"] for e in partial["selection"]["evaluations"]] == [10, 20]
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  # The start of a run logs its resolved config and every parameter array.
  overview = [r.getMessage() for r in caplog.records if r.getMessage().startswith("parameters: ")]
  assert len(overview) == 1 and "stem_conv/kernel" in overview[0] and "head/bias" in overview[0]
  assert any(r.getMessage().startswith("config:\n") and "best_metric: ua" in r.getMessage()
             for r in caplog.records)
  monkeypatch.setattr(ocp.CheckpointManager, "reached_preemption", lambda self, step: False)
  results = train.train_and_evaluate(tiny_config(synth_dir, **RUN), workdir)
  assert results["preempted"] is False and results["steps"] == 40 and results["best_step"] == 20
