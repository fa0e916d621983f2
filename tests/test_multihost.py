"""Two processes x 4 fake devices on localhost against one process x 8 devices, same global batch."""

import os
import shutil
import sys

import jax
import numpy as np
import pytest

from conftest import tiny_config, tiny_flags
from lanser_jax import checkpointing, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "launch"))
import local_multiprocess  # noqa: E402

STEPS = {"num_train_steps": 8, "checkpoint_every_steps": 4, "eval_every_steps": 8, "data.test_split": ""}


def _params(workdir, step):
  return checkpointing.load_variables(checkpointing.resolve_state_path(workdir, step))


def _two_processes(synth_dir, workdir, **overrides):
  env = dict(os.environ, PYTHONPATH=REPO)
  status = local_multiprocess.launch(
      ["-m", "lanser_jax.main", f"--workdir={workdir}", *tiny_flags(synth_dir, **{**STEPS, **overrides})],
      num_processes=2, devices_per_process=4, env=env, timeout_s=600)
  assert status == 0


def _close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5), a, b)


@pytest.fixture(scope="module")
def one_process_run(synth_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("one_process"))
  train.train_and_evaluate(tiny_config(synth_dir, **STEPS), workdir)
  return workdir


def test_two_processes_continue_a_one_process_checkpoint(synth_dir, one_process_run, tmp_path):
  """1 -> 2 processes: a checkpoint of 8 devices in one process resumes in 2 x 4 and ends where 1 x 8 ends."""
  workdir = str(tmp_path / "resumed")
  shutil.copytree(one_process_run, workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "8"))
  _two_processes(synth_dir, workdir)
  _close(_params(workdir, 8), _params(one_process_run, 8))


def test_one_process_continues_a_two_process_checkpoint(synth_dir, one_process_run, tmp_path):
  """2 x 4 training from scratch equals 1 x 8 training; and 2 -> 1 processes: the 2-process checkpoint of
  step 4 resumes in one process and ends where 1 x 8 ends."""
  workdir = str(tmp_path / "two_then_one")
  _two_processes(synth_dir, workdir)
  _close(_params(workdir, 4), _params(one_process_run, 4))
  _close(_params(workdir, 8), _params(one_process_run, 8))
  shutil.rmtree(os.path.join(workdir, "checkpoints", "8"))
  train.train_and_evaluate(tiny_config(synth_dir, **STEPS), workdir)
  _close(_params(workdir, 8), _params(one_process_run, 8))
