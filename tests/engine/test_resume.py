"""Resuming after what clusters do to a run: another worker count, a damaged checkpoint, a diverged step.

One unbroken 12-step run (checkpoints at 6 and 12) is the reference; each test breaks a copy of it, or a
run stopped right after its step-6 checkpoint (a kill there, without the cost of a subprocess), and checks
that the resumed run ends with bit-identical parameters or stops with a message naming what is wrong.
"""

import glob
import logging
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config, tiny_flags
from lanser_jax.engine import checkpointing, writers
from lanser_jax.serving import classifier
from lanser_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Short and without evaluation: the tests are about the data position and the saved state.
RESUME = {"num_train_steps": 12, "checkpoint_every_steps": 6, "log_every_steps": 3,
          "data.eval_split": "", "data.test_split": ""}


def _config(data_dir, **overrides):
  return tiny_config(data_dir, **{**RESUME, **overrides})


def _params(workdir):
  return checkpointing.load_variables(checkpointing.resolve_state_path(workdir, "latest"))


def _assert_same_params(a, b):
  jax.tree.map(np.testing.assert_array_equal, _params(a), _params(b))


class _Killed(Exception):
  pass


def _run_killed_after(data_dir, workdir, stop_step, monkeypatch, **overrides):
  """Trains until the checkpoint of `stop_step` is on disk, then dies as if killed there."""
  real_save = checkpointing.save

  def save_then_die(manager, step, *args, **kwargs):
    real_save(manager, step, *args, **kwargs)
    if step == stop_step:
      manager.wait_until_finished()
      raise _Killed(step)

  monkeypatch.setattr(checkpointing, "save", save_then_die)
  with pytest.raises(_Killed):
    train.train_and_evaluate(_config(data_dir, **overrides), workdir)
  monkeypatch.setattr(checkpointing, "save", real_save)


@pytest.fixture(scope="module")
def unbroken(synth_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("unbroken") / "run")
  train.train_and_evaluate(_config(synth_dir), workdir)
  return workdir


def _copy_until(unbroken_dir, dst, step):
  """The unbroken run's workdir as it was right after the checkpoint of `step`."""
  shutil.copytree(unbroken_dir, dst)
  for d in glob.glob(os.path.join(dst, "checkpoints", "*")):
    if int(os.path.basename(d)) > step:
      shutil.rmtree(d)
  return dst


def test_first_progress_line_has_a_rate(unbroken):
  rows = [r for r in writers.read_jsonl(os.path.join(unbroken, "metrics.jsonl")) if "train/loss" in r]
  assert [r["step"] for r in rows] == [3, 6, 9, 12]
  rates = [r.get("train/examples_per_sec") for r in rows]
  assert all(r is not None and np.isfinite(r) and r > 0 for r in rates), rates


@pytest.mark.slow
def test_resume_with_two_workers_from_a_zero_worker_checkpoint(synth_dir, unbroken, tmp_path, caplog):
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 6)
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(_config(synth_dir, **{"data.num_workers": 2}), broken)
  assert any("data position rebuilt from step 6" in r.getMessage() and "num_workers 0 -> 2" in r.getMessage()
             for r in caplog.records)
  _assert_same_params(broken, unbroken)


def test_resume_without_workers_from_a_two_worker_checkpoint(synth_dir, unbroken, tmp_path, monkeypatch,
                                                             caplog):
  broken = str(tmp_path / "broken")
  _run_killed_after(synth_dir, broken, 6, monkeypatch, **{"data.num_workers": 2})
  assert sorted(os.listdir(os.path.join(broken, "checkpoints"))) == ["6"]
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(_config(synth_dir), broken)
  assert any("num_workers 2 -> 0" in r.getMessage() for r in caplog.records)
  _assert_same_params(broken, unbroken)


def test_unreadable_iterator_state_is_rebuilt_from_the_step(synth_dir, unbroken, tmp_path, caplog):
  """A Grain state this version cannot read (its iterator file holds another format) is not fatal."""
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 6)
  step_dir = os.path.join(broken, "checkpoints", "6")
  with open(os.path.join(step_dir, "data_iter", "process_0-of-1.json"), "w") as f:
    f.write('{"format_of_another_grain": 3}')
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(_config(synth_dir), broken)
  assert any("Grain iterator state does not load here" in r.getMessage() for r in caplog.records)
  _assert_same_params(broken, unbroken)


def test_step_without_iterator_settings_is_rebuilt_from_the_step(synth_dir, unbroken, tmp_path, caplog):
  """A step whose metadata does not say how its iterator was built (sampler, workers...) is not trusted to
  hold a state this run's iterator reads the same way: the position is rebuilt from the step."""
  import json
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 6)
  meta_path = os.path.join(broken, "checkpoints", "6", "_CHECKPOINT_METADATA")
  with open(meta_path) as f:
    meta = json.load(f)
  del meta["custom_metadata"]["iterator"]
  with open(meta_path, "w") as f:
    json.dump(meta, f)
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(_config(synth_dir), broken)
  assert any("data position rebuilt from step 6: the step records no data iterator settings" in r.getMessage()
             for r in caplog.records)
  _assert_same_params(broken, unbroken)


def test_checkpoint_of_the_grain_order_is_resumed_from_its_step_in_the_sampler_order(synth_dir, unbroken,
                                                                                   tmp_path, caplog):
  """A checkpoint written before the project's sampler (iterator settings without `sampler`; its Grain state
  a position in Grain's order) does not restore that state: the position is rebuilt from the step in the
  sampler's order, with a warning saying why, and the run ends as the unbroken one does."""
  import json
  from lanser_jax.input_pipeline import sampler
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 6)
  meta_path = os.path.join(broken, "checkpoints", "6", "_CHECKPOINT_METADATA")
  with open(meta_path) as f:
    meta = json.load(f)
  del meta["custom_metadata"]["iterator"]["sampler"]  # as the Grain-order pipeline wrote it
  with open(meta_path, "w") as f:
    json.dump(meta, f)
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(_config(synth_dir), broken)
  assert any("data position rebuilt from step 6" in r.getMessage()
             and f"sampler None -> {sampler.SAMPLER}" in r.getMessage() for r in caplog.records)
  _assert_same_params(broken, unbroken)


@pytest.mark.parametrize("override, message", [
    ({"batch_size": 16}, r"global batch size: checkpoint 8, this run 16"),
    ({"data.label_fraction": 0.5}, r"label subset: checkpoint None, this run \{'label_fraction': 0.5"),
])
def test_changed_data_is_refused(synth_dir, unbroken, tmp_path, override, message):
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 6)
  with pytest.raises(ValueError, match=r"checkpoint .*/checkpoints/6 was written for other training data"
                                       r"(.|\n)*" + message):
    train.train_and_evaluate(_config(synth_dir, **override), broken)


def test_changed_dataset_is_refused(synth_dir, unbroken, tmp_path):
  from lanser_jax.input_pipeline import synthetic
  other = str(tmp_path / "other_data")
  synthetic.write_synthetic(other, num_classes=4, mel_bins=32, num_train=64, num_eval=21, min_frames=20,
                            max_frames=160, num_shards=2, seed=1)
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 6)
  with pytest.raises(ValueError, match=r"dataset: checkpoint \{.*'num_examples': 96.*this run \{.*"
                                       r"'num_examples': 64(.|\n)*data.dir: checkpoint .*, this run .*other_data"):
    train.train_and_evaluate(_config(other), broken)


def _delete_array_file(step_dir):
  victims = sorted(glob.glob(os.path.join(step_dir, "state", "d", "*")))
  assert victims, os.listdir(os.path.join(step_dir, "state"))
  os.remove(victims[0])
  return victims[0]


@pytest.mark.subprocess
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(synth_dir, unbroken, tmp_path):
  """Through the command line, as a cluster restarts it: a report, the step moved aside, no dump."""
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 12)
  victim = _delete_array_file(os.path.join(broken, "checkpoints", "12"))
  flags = tiny_flags(synth_dir, **RESUME)
  out = subprocess.run([sys.executable, "-m", "lanser_jax.main", f"--workdir={broken}", *flags], cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"checkpoint step 12 is damaged (missing: {victim}" in out.stderr
  # No TensorStore spec dump anywhere: neither in our report of the damaged step, nor from reads of it left
  # running (the step's arrays are checked with reads that are all awaited before Orbax restores anything).
  report = [l for l in out.stderr.splitlines() if "is damaged" in l or "resuming from" in l]
  assert report, out.stderr[-3000:]
  for noise in ("tensorstore_spec", "Event loop is closed", "Traceback", "never retrieved"):
    assert noise not in out.stderr, (noise, out.stderr[-3000:])
  moved = os.path.join(broken, "checkpoints", "12.damaged")
  assert os.path.isdir(moved) and os.path.exists(os.path.join(moved, "state", "_METADATA"))
  assert "resuming from" in out.stderr and "checkpoints/6" in out.stderr
  _assert_same_params(broken, unbroken)  # trained 6 -> 12 again, and wrote a new step 12


def _largest_value_file(step_dir):
  """The largest file of the step's arrays: array values, not the database's index."""
  files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
  return max(files, key=os.path.getsize)


def _listing(workdir):
  return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_truncated_or_altered_array_file_falls_back(synth_dir, unbroken, tmp_path, damage, caplog):
  """A file cut short fails its read; one flipped byte fails the array's checksum (or its decompression)."""
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 12)
  victim = _largest_value_file(os.path.join(broken, "checkpoints", "12"))
  size = os.path.getsize(victim)
  with open(victim, "r+b") as f:
    if damage == "truncated":
      f.truncate(size // 2)
    else:
      f.seek(size // 2)
      byte = f.read(1)
      f.seek(size // 2)
      f.write(bytes([byte[0] ^ 0x10]))
  with caplog.at_level(logging.WARNING):
    train.train_and_evaluate(_config(synth_dir), broken)
  reports = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
  assert len(reports) == 1 and reports[0].startswith("checkpoint step 12 is damaged (array "), reports
  if damage == "flipped":
    assert "fails its checksum" in reports[0] or "Zstd" in reports[0], reports[0]
  assert _listing(broken) == ["12", "12.damaged", "6"]  # trained 6 -> 12 again beside the moved step
  _assert_same_params(broken, unbroken)


@pytest.mark.subprocess
def test_changed_model_is_refused_without_moving_anything_and_resumes_when_put_back(synth_dir, unbroken, tmp_path):
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 12)
  with open(os.path.join(broken, "config.json")) as f:
    config_before = f.read()
  flags = tiny_flags(synth_dir, **{**RESUME, "num_train_steps": 18})
  cmd = lambda *extra: [sys.executable, "-m", "lanser_jax.main", f"--workdir={broken}", *flags, *extra]
  env = dict(os.environ, PYTHONPATH=REPO)
  out = subprocess.run(cmd("--config.model.width=0.5"), cwd=REPO, env=env, capture_output=True, text=True)
  assert out.returncode != 0
  line = [l for l in out.stderr.splitlines() if "does not fit this run's state" in l]
  assert len(line) == 1, out.stderr[-3000:]
  assert "params.head.kernel: checkpoint (256, 4) float32, this run (128, 4) float32" in line[0]
  assert "config changed since the checkpoint: model.width 1.0 -> 0.5, num_train_steps 12 -> 18" in line[0]
  assert "Traceback" not in out.stderr
  assert _listing(broken) == ["12", "6"]  # nothing renamed
  with open(os.path.join(broken, "config.json")) as f:
    assert f.read() == config_before  # nothing rewritten
  out = subprocess.run(cmd(), cwd=REPO, env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "resuming from" in out.stderr and "checkpoints/12" in out.stderr


def test_read_that_fails_once_is_retried_and_the_step_kept(synth_dir, unbroken, tmp_path, monkeypatch, caplog):
  """A file of the step is away for the first read (a storage blip) and back for the second."""
  monkeypatch.setattr(checkpointing, "RETRY_WAITS_S", (0.5, 0.5))
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 12)
  victim = _largest_value_file(os.path.join(broken, "checkpoints", "12"))
  os.rename(victim, victim + ".away")
  real_verify = checkpointing.verify_arrays
  calls = []

  def verify_then_heal(*args, **kwargs):
    calls.append(args[0])
    try:
      return real_verify(*args, **kwargs)
    finally:
      if os.path.exists(victim + ".away"):
        os.rename(victim + ".away", victim)
  monkeypatch.setattr(checkpointing, "verify_arrays", verify_then_heal)
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(_config(synth_dir), broken)
  assert len(calls) == 2  # failed once, then read whole
  assert any("checkpoint read failed" in r.getMessage() and "trying again" in r.getMessage()
             for r in caplog.records)
  assert any("resuming from" in r.getMessage() and r.getMessage().endswith("/checkpoints/12")
             for r in caplog.records)
  assert _listing(broken) == ["12", "6"]
  _assert_same_params(broken, unbroken)


def test_storage_that_keeps_failing_stops_the_run_with_nothing_moved(synth_dir, unbroken, tmp_path,
                                                                    monkeypatch):
  monkeypatch.setattr(checkpointing, "RETRY_WAITS_S", (0.1,))

  def unavailable(*args, **kwargs):
    raise checkpointing._ReadFailure(False, "UNAVAILABLE: the bucket answered 503")
  monkeypatch.setattr(checkpointing, "verify_arrays", unavailable)
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 12)
  with pytest.raises(checkpointing.CheckpointError, match=r"checkpoint step 12 .* could not be read after 2 "
                     r"attempts \(UNAVAILABLE: the bucket answered 503\); this does not say the files are "
                     r"damaged, so nothing was moved or deleted"):
    train.train_and_evaluate(_config(synth_dir), broken)
  assert _listing(broken) == ["12", "6"]


def test_no_restorable_checkpoint_lists_what_was_tried(synth_dir, unbroken, tmp_path):
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 12)
  for step in (6, 12):
    _delete_array_file(os.path.join(broken, "checkpoints", str(step)))
  with pytest.raises(checkpointing.CheckpointError,
                     match=r"no checkpoint in .*checkpoints restores; tried, newest first:\n"
                           r"  step 12: missing: .*/12/state/d/.*\(moved to .*12.damaged\)\n"
                           r"  step 6: missing: .*/6/state/d/"):
    train.train_and_evaluate(_config(synth_dir), broken)
  assert sorted(os.listdir(os.path.join(broken, "checkpoints"))) == ["12.damaged", "6.damaged"]


def test_load_and_init_from_name_the_damaged_step_and_file(synth_dir, unbroken, tmp_path):
  damaged = _copy_until(unbroken, str(tmp_path / "damaged"), 12)
  victim = _delete_array_file(os.path.join(damaged, "checkpoints", "12"))
  expected = rf"checkpoint step 12 \(.*/checkpoints/12\) is damaged: missing: {victim}; ValueError: NOT_FOUND"
  with pytest.raises(checkpointing.CheckpointError, match=expected):
    classifier.load(damaged, "latest")
  with pytest.raises(checkpointing.CheckpointError, match=expected):
    train.train_and_evaluate(_config(synth_dir, init_from=damaged, init_from_step="latest"),
                             str(tmp_path / "finetune"))


def test_nan_loss_stops_training_without_overwriting_the_last_good_checkpoint(synth_dir, unbroken, tmp_path,
                                                                            monkeypatch):
  """The NaN is injected by wrapping the compiled step: from step 8 on, the parameters become NaN (as
  after a divergence), so step 8's loss and gradient norm are NaN."""
  real = train.make_train_step

  def diverging_train_step(*args, **kwargs):
    step_fn = real(*args, **kwargs)

    def step(state, batch):
      new_state, stats = step_fn(state, batch)
      bad = new_state.step >= 8
      poison = lambda x: jnp.where(bad, jnp.nan, x)
      stats = dict(stats, **{"train/loss": poison(stats["train/loss"])})
      return new_state.replace(params=jax.tree.map(poison, new_state.params)), stats
    return step

  monkeypatch.setattr(train, "make_train_step", diverging_train_step)
  broken = _copy_until(unbroken, str(tmp_path / "broken"), 6)
  with pytest.raises(train.NonFiniteError, match=r"^step 8: non-finite train/loss nan.*the last good "
                                                 r"checkpoint, step 6, is kept"):
    train.train_and_evaluate(_config(synth_dir), broken)
  assert sorted(os.listdir(os.path.join(broken, "checkpoints"))) == ["6"]
  saved = _params(broken)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(saved))
  jax.tree.map(np.testing.assert_array_equal, saved, checkpointing.load_variables(
      checkpointing.resolve_state_path(unbroken, 6)))


def test_non_finite_gradient_norm_alone_stops():
  class Manager:
    directory = "/run/checkpoints"

    def wait_until_finished(self):
      pass

    def latest_step(self):
      return 4

  ok = {"train/loss": jnp.float32(1.0), "train/grad_norm": jnp.float32(2.0)}
  train.check_finite([(5, ok), (6, ok)], Manager())  # finite: nothing happens
  bad = dict(ok, **{"train/grad_norm": jnp.float32(np.inf)})
  with pytest.raises(train.NonFiniteError, match=r"^step 7: non-finite train/grad_norm inf;.*step 4, is kept"):
    train.check_finite([(6, ok), (7, bad), (8, bad)], Manager())


def test_progress_lines_always_carry_a_rate(caplog):
  with caplog.at_level(logging.INFO):
    p = writers.Progress(total_steps=100, batch_size=8, first_step=0)
    first = p(1, {"train/loss": 1.0})  # reported before any step was timed (log_every_steps=1)
    p.start(1)
    second = p(2, {"train/loss": 1.0})
  lines = [r.getMessage() for r in caplog.records if "examples/s" in r.getMessage()]
  assert len(lines) == 2
  for line, out in zip(lines, (first, second)):
    assert "nan" not in line and "?" not in line, line
    assert np.isfinite(out["train/examples_per_sec"]) and out["train/examples_per_sec"] > 0
