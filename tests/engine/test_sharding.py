"""Parameter sharding on 8 fake CPU devices: the rules, sharded == replicated training, and checkpoints
that move between shardings, process counts and a one-device lanser_jax.load."""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config, tiny_flags
from lanser_jax.engine import checkpointing, sharding
from lanser_jax.serving import classifier
from lanser_jax import models, train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "launch"))
import local_multiprocess  # noqa: E402

pytestmark = pytest.mark.multidevice

MODEL = "conformer_tiny"
# SGD, not AdamW: a few of the Conformer's parameters get an exactly-zero gradient (a key bias adds the same
# score to every key of a query; a bias before BatchNorm is removed by it), and Adam's step m / sqrt(v)
# turns the float rounding noise of such a gradient, which depends on the reduction order, into a full
# learning-rate step of either sign. SGD's step is proportional to the gradient, so equal gradients give
# equal parameters and a wrong sharding shows.
STEPS = {"model.name": MODEL, "num_train_steps": 4, "checkpoint_every_steps": 2, "eval_every_steps": 4,
         "log_every_steps": 2, "data.test_split": "", "optimizer.name": "sgd", "optimizer.learning_rate": 0.1}
FSDP = {"sharding.mesh": "data=2,fsdp=4", "sharding.rules": "fsdp"}
TENSOR = {"sharding.mesh": "data=4,model=2", "sharding.rules": "tensor"}


def _params(workdir, step):
  return checkpointing.load_variables(checkpointing.resolve_state_path(workdir, step))


def _close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=5e-4, atol=5e-5), a, b)


# ---------------------------------------------------------------------------------------------------
# The rules.


def _abstract_state(mesh_spec, rules):
  model = models.create_model(MODEL, 4)
  tx = train.make_optimizer(tiny_config("unused"), lambda step: 1e-3)
  def init(key):
    v = model.init(key, jnp.zeros((1, 64, 32)))
    return train.TrainState.create(apply_fn=model.apply, params=v["params"], batch_stats=v["batch_stats"], tx=tx)
  abstract = jax.eval_shape(init, jax.random.key(0))
  mesh = sharding.make_mesh(mesh_spec)
  return abstract, sharding.tree_shardings(mesh, abstract, rules), mesh


def test_mesh_spec_parsing_and_errors():
  assert sharding.parse_mesh("data=-1", 8) == {"data": 8}
  assert sharding.parse_mesh("data=2,fsdp=-1", 8) == {"data": 2, "fsdp": 4}
  for bad, match in (("fsdp=8", "needs a 'data' axis"), ("data=3", "8"), ("data=2,pipe=4", "axis=size"),
                     ("data=-1,fsdp=-1", "at most one"), ("data=x", "not an integer")):
    with pytest.raises(ValueError, match=match):
      sharding.parse_mesh(bad, 8)
  mesh = sharding.make_mesh("data=4,model=2")
  assert sharding.batch_sharding(mesh).spec == jax.sharding.PartitionSpec("data")
  assert sharding.batch_sharding(sharding.make_mesh("data=2,fsdp=4")).spec == \
      jax.sharding.PartitionSpec(("data", "fsdp"))


def test_fsdp_rules_split_kernels_and_their_moments_alike():
  abstract, shard, _ = _abstract_state("data=2,fsdp=4", "fsdp")
  kernel = shard.params["block1"]["ffn1"]["dense1"]["kernel"]  # [32, 128]: the 128 axis is split
  assert kernel.spec == jax.sharding.PartitionSpec(None, "fsdp")
  assert shard.params["block1"]["ffn1"]["dense1"]["bias"].spec == jax.sharding.PartitionSpec()
  mu = shard.opt_state[0].mu["block1"]["ffn1"]["dense1"]["kernel"]
  assert mu.spec == kernel.spec
  assert shard.step.spec == jax.sharding.PartitionSpec()


def test_tensor_rules_split_heads_and_hidden_units():
  _, shard, _ = _abstract_state("data=4,model=2", "tensor")
  att = shard.params["block1"]["attention"]
  assert att["query"]["kernel"].spec == jax.sharding.PartitionSpec(None, "model")
  assert att["out"]["kernel"].spec == jax.sharding.PartitionSpec("model")
  assert shard.params["block1"]["ffn2"]["dense2"]["kernel"].spec == jax.sharding.PartitionSpec("model")
  assert shard.params["head"]["kernel"].spec == jax.sharding.PartitionSpec()


def test_bad_rules_name_the_array_and_rule():
  with pytest.raises(ValueError, match="names mesh axis 'model'"):
    _abstract_state("data=-1", "tensor")
  with pytest.raises(ValueError, match="head/kernel.*not divisible"):
    _abstract_state("data=1,model=8", r"head/kernel$=None,model")  # 4 classes over 8 devices
  with pytest.raises(ValueError, match="not 'regex=spec'"):
    _abstract_state("data=-1", "kernel")


# ---------------------------------------------------------------------------------------------------
# Training and checkpoints.


@pytest.fixture(scope="module")
def runs(synth_dir, tmp_path_factory):
  out = {}
  for name, overrides in (("replicated", {}), ("fsdp", FSDP)):
    out[name] = str(tmp_path_factory.mktemp(name))
    train.train_and_evaluate(tiny_config(synth_dir, **STEPS, **overrides), out[name])
  return out


def test_fsdp_training_equals_replicated(runs):
  _close(_params(runs["fsdp"], 2), _params(runs["replicated"], 2))
  _close(_params(runs["fsdp"], 4), _params(runs["replicated"], 4))
  moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), _params(runs["replicated"], 2),
                       _params(runs["replicated"], 4))
  assert max(jax.tree.leaves(moved)) > 100 * 5e-5  # the steps moved the parameters far beyond the tolerance


def test_fsdp_checkpoint_resumes_under_tensor_parallelism(synth_dir, runs, tmp_path):
  """Written split over fsdp (data=2 x fsdp=4), continued split over heads (data=4 x model=2): same end
  point. (Another layout of the same rules restores through the same code; one more layout here would be one
  more Conformer compile, ~30 s, for no other path.)"""
  workdir = str(tmp_path / "fsdp_then_tensor")
  shutil.copytree(runs["fsdp"], workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  train.train_and_evaluate(tiny_config(synth_dir, **STEPS, **TENSOR), workdir)
  _close(_params(workdir, 4), _params(runs["replicated"], 4))


@pytest.mark.subprocess
def test_two_processes_continue_an_fsdp_checkpoint_replicated(synth_dir, runs, tmp_path):
  """Written by 1 process x 8 devices under fsdp, continued by 2 processes x 4 devices replicated."""
  workdir = str(tmp_path / "fsdp_then_two_processes")
  shutil.copytree(runs["fsdp"], workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  env = dict(os.environ, PYTHONPATH=REPO)
  status = local_multiprocess.launch(
      ["-m", "lanser_jax.main", f"--workdir={workdir}", *tiny_flags(synth_dir, **STEPS)],
      num_processes=2, devices_per_process=4, env=env, timeout_s=600)
  assert status == 0
  _close(_params(workdir, 4), _params(runs["replicated"], 4))


@pytest.mark.subprocess
def test_fsdp_checkpoint_loads_on_one_cpu(runs):
  """lanser_jax.load in a process with a single CPU device gives the embedding the 8-device process gets."""
  x = np.linspace(-1, 1, 80 * 32, dtype=np.float32).reshape(80, 32)
  here = classifier.load(runs["fsdp"]).embed_log_mel(x)
  code = ("import json, jax, numpy as np; from lanser_jax.serving import classifier; assert jax.device_count() == 1; "
          "x = np.linspace(-1, 1, 80 * 32, dtype=np.float32).reshape(80, 32); "
          f"print(json.dumps(classifier.load({runs['fsdp']!r}).embed_log_mel(x).tolist()))")
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  np.testing.assert_allclose(np.array(json.loads(out.stdout.strip().splitlines()[-1])), here, rtol=1e-5, atol=1e-6)
