"""The training engine end to end on 8 fake CPU devices with the tiny model."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from helpers import tiny_config, tiny_flags
from lanser_jax.engine import checkpointing, writers
from lanser_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _final_params(workdir):
  path = checkpointing.resolve_state_path(workdir, "latest")
  return checkpointing.load_variables(path)


@pytest.mark.multidevice
def test_trains_on_eight_devices_and_writes_results(synth_dir, tmp_path):
  assert jax.device_count() == 8
  workdir = str(tmp_path / "run")
  results = train.train_and_evaluate(tiny_config(synth_dir, **{"optimizer.schedule": "cosine",
                                                                "optimizer.warmup_steps": 5}), workdir)
  assert results["validation"]["num_examples"] == 21 and results["test"]["num_examples"] == 21
  assert results["validation"]["ua"] > 0.5  # chance is 0.25 on 4 balanced classes
  with open(os.path.join(workdir, "results.json")) as f:
    written = json.load(f)
  evals = written["selection"]["evaluations"]
  assert [e["step"] for e in evals] == [10, 20]
  best = max(evals, key=lambda e: (e["ua"], -e["step"]))  # the rule: highest UA, then the earlier step
  assert written["best_step"] == best["step"] == written["validation"]["step"] == written["test"]["step"]
  assert written["validation"]["ua"] == best["ua"]
  rows = writers.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in rows if "train/loss" in r] == [5, 10, 15, 20]
  assert [r["step"] for r in rows if "validation/ua" in r] == [10, 20]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  for f in ("config.json", "data/stats.json", "data/dataset.json", "data/label_names.json"):
    assert os.path.exists(os.path.join(workdir, f)), f


@pytest.mark.slow
def test_soft_labels_bf16_sgd(synth_dir, tmp_path):
  c = tiny_config(synth_dir, **{"data.target": "scores", "dtype": "bfloat16", "optimizer.name": "sgd",
                                "optimizer.learning_rate": 0.05, "label_smoothing": 0.1,
                                "optimizer.schedule": "cosine", "optimizer.warmup_steps": 5})
  results = train.train_and_evaluate(c, str(tmp_path / "soft"))
  assert results["validation"]["ua"] > 0.4


@pytest.mark.subprocess
def test_sigkill_and_restart_equals_unbroken_run(synth_dir, tmp_path):
  """A run killed with SIGKILL mid-training and started again ends with the same parameters."""
  # The tests' tiny configuration, so the subprocesses reuse the train step compiled for the other tests.
  args = tiny_flags(synth_dir, num_train_steps=60, checkpoint_every_steps=10, eval_every_steps=1000,
                    **{"data.test_split": ""})
  cmd = lambda wd: [sys.executable, "-m", "lanser_jax.main", f"--workdir={wd}", *args]
  env = dict(os.environ, PYTHONPATH=REPO)
  broken, unbroken = str(tmp_path / "broken"), str(tmp_path / "unbroken")

  proc = subprocess.Popen(cmd(broken), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  first = os.path.join(broken, "checkpoints", "10")
  while not os.path.isdir(first) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
  killed_at = checkpointing.resolve_state_path(broken, "latest")
  assert not killed_at.endswith("/60/state")

  subprocess.run(cmd(broken), cwd=REPO, env=env, check=True, capture_output=True)
  # The unbroken reference in this process (the same configuration as the flags): one subprocess fewer.
  train.train_and_evaluate(tiny_config(synth_dir, num_train_steps=60, checkpoint_every_steps=10,
                                       eval_every_steps=1000, **{"data.test_split": ""}), unbroken)
  a, b = _final_params(broken), _final_params(unbroken)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert checkpointing.resolve_state_path(broken, "latest").endswith("/60/state")


def test_init_from_and_linear_probe(synth_dir, tmp_path):
  pre = str(tmp_path / "pre")
  train.train_and_evaluate(tiny_config(synth_dir, num_train_steps=10, eval_every_steps=10), pre)
  before = checkpointing.load_variables(checkpointing.resolve_state_path(pre, "best"))

  probe = str(tmp_path / "probe")
  c = tiny_config(synth_dir, num_train_steps=10, eval_every_steps=10, init_from=pre, freeze_backbone=True)
  c.data.test_split = ""
  train.train_and_evaluate(c, probe)
  after = checkpointing.load_variables(checkpointing.resolve_state_path(probe, "latest"))
  for k in before["params"]:
    if k != "head":  # frozen backbone: parameters and statistics unchanged
      jax.tree.map(np.testing.assert_array_equal, before["params"][k], after["params"][k])
  jax.tree.map(np.testing.assert_array_equal, before["batch_stats"], after["batch_stats"])
  assert not np.array_equal(before["params"]["head"]["kernel"], after["params"]["head"]["kernel"])


@pytest.mark.slow
def test_checkpoint_of_other_architecture_is_refused(synth_dir, tmp_path):
  pre = str(tmp_path / "narrow")
  train.train_and_evaluate(tiny_config(synth_dir, num_train_steps=2, eval_every_steps=2,
                                       **{"model.width": 0.5}), pre)
  c = tiny_config(synth_dir, num_train_steps=2, init_from=pre)
  # The source run's config.json names its model: one line says which keys differ (before any work) ...
  with pytest.raises(checkpointing.CheckpointMismatchError, match=r"^init_from=\S+ was trained with model "
                     r"width=0.5; this config builds width=1.0 \(':runlocal' sets model.name='tiny'\): keep the "
                     r"source's model with --config.model.width=0.5, or init from a run of this model$"):
    train.train_and_evaluate(c, str(tmp_path / "ft"))
  # ... and a checkpoint without its run's config.json is still refused when its arrays are compared.
  os.remove(os.path.join(pre, "config.json"))
  with pytest.raises(ValueError, match=r"does not fit the model: 0 arrays missing, 0 unexpected, \d+ of other "
                     r"shape(.|\n)*shape differs: stage1_block1/Conv_0/kernel: checkpoint \(1, 1, 4, 4\) "
                     r"vs model \(1, 1, 8, 8\)"):
    train.train_and_evaluate(c, str(tmp_path / "ft2"))


@pytest.mark.subprocess
def test_unknown_override_names_the_key(synth_dir, tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "lanser_jax.main", "--config=lanser_jax/experiments/synthetic.py:runlocal",
       f"--workdir={tmp_path}", "--config.optimizer.learnin_rate=0.1"],
      cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
  assert out.returncode != 0 and "Traceback" not in out.stderr
  assert "override names no key of the config: 'learnin_rate' Did you mean \"learning_rate\"" in out.stderr


@pytest.mark.multidevice
def test_device_prefetch_runs_ahead_and_saves_the_consumed_position(synth_dir):
  """Two batches wait on the devices, sharded over the batch axis, while one is used; the state it reports
  (what a checkpoint stores) is the position after the batches handed out, so a restore resumes there."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from lanser_jax.input_pipeline import pipeline
  sharding = NamedSharding(Mesh(np.asarray(jax.devices()), ("data",)), P("data"))
  normalizer = pipeline.Normalizer.from_file(os.path.join(synth_dir, "stats.json"))
  make = lambda: iter(pipeline.train_dataset(synth_dir, "train", global_batch_size=8, crop_frames=32,
                                             normalizer=normalizer, num_classes=4, seed=3, on_device=True))
  plain = make()
  expected = [next(plain) for _ in range(7)]
  host = make()
  prefetch = train.DevicePrefetch(host, sharding, size=2)
  for e in expected[:3]:
    got = next(prefetch)
    assert isinstance(got["log_mel"], jax.Array) and got["log_mel"].sharding == sharding
    assert got["log_mel"].dtype == np.float16
    for key in e:
      np.testing.assert_array_equal(np.asarray(got[key]), e[key])
  five = make()
  for _ in range(5):
    next(five)
  assert host.get_state() == five.get_state()  # 3 handed out + 2 ahead
  state = prefetch.get_state()
  resumed = train.DevicePrefetch(make(), sharding, size=2)
  resumed.set_state(state)
  for e in expected[3:]:
    np.testing.assert_array_equal(np.asarray(next(resumed)["log_mel"]), e["log_mel"])


def test_check_fits_names_missing_and_unexpected_arrays():
  model = {"stem": {"kernel": np.zeros((3, 3))}, "stage5": {"kernel": np.zeros(2)}}
  ckpt = {"stem": {"kernel": np.zeros((3, 3))}, "stage4": {"kernel": np.zeros(2)}}
  with pytest.raises(ValueError, match=r"missing in checkpoint: stage5/kernel(.|\n)*not in model: stage4/kernel"):
    checkpointing.check_fits(ckpt, model, "ckpt")
  checkpointing.check_fits(ckpt, {"stem": {"kernel": np.zeros((3, 3))}, "stage4": {"kernel": np.zeros(2)}}, "x")
