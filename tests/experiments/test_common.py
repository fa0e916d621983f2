"""lanser_jax/experiments/common.py and the rules the experiment files keep: each file imports common and no
other experiment file, builds no argument string by editing one, and the backbone files' inline optimiser
values are the recipe that common.py states (the demo derives its variants from that recipe)."""

import ast
import glob
import os

import pytest

from lanser_jax import config_lib
from lanser_jax.experiments import common

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
EXP = os.path.join(ROOT, "lanser_jax", "experiments")
# What loading or patching another experiment file by path takes.
BANNED_NAMES = {"load_python_file", "load_experiment", "spec_from_file_location", "import_module", "__file__"}


def load(name, arg):
  return config_lib.load_experiment(os.path.join(EXP, name) + ":" + arg)


def _files():
  return sorted(p for p in glob.glob(os.path.join(EXP, "**", "*.py"), recursive=True)
                if not p.endswith("__init__.py"))


@pytest.mark.parametrize("path", _files(), ids=lambda p: os.path.relpath(p, EXP))
def test_no_experiment_file_loads_or_edits_another(path):
  tree = ast.parse(open(path).read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module == "lanser_jax.experiments":
      assert [a.name for a in node.names] == ["common"], f"{path}:{node.lineno} imports {ast.dump(node)}"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
      assert not any(m.startswith("lanser_jax.experiments.") for m in modules), f"{path}:{node.lineno}"
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
    assert name not in BANNED_NAMES, f"{path}:{node.lineno} uses {name}"
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "replace"
        and any(isinstance(a, ast.Constant) and isinstance(a.value, str) and "=" in a.value for a in node.args)):
      pytest.fail(f"{path}:{node.lineno} edits an argument string")


def test_the_checker_catches_a_load_by_path(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from lanser_jax import config_lib\nX = config_lib.load_python_file('pretrain_peoples_speech.py')\n")
  with pytest.raises(AssertionError, match="load_python_file"):
    test_no_experiment_file_loads_or_edits_another(str(bad))
  bad.write_text("SPEC = 'a.py:fold=1,protocol=loso,x=1'.replace(',protocol=loso,', ',')\n")
  with pytest.raises(pytest.fail.Exception, match="edits an argument string"):
    test_no_experiment_file_loads_or_edits_another(str(bad))


def _flat(c, prefix=""):
  out = {}
  for k, v in c.items():
    if hasattr(v, "items"):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


# Keys a backbone file may set differently from the ResNet-50 file it mirrors: everything else (data, steps,
# crops, platform sizes, evaluation) must be the same, so that a comparison changes the backbone only.
BACKBONE_KEYS = {"model.name", "optimizer.learning_rate", "optimizer.warmup_steps", "optimizer.weight_decay",
                 "optimizer.grad_clip_norm", "sharding.mesh", "sharding.rules", "init_from"}


def _check_recipe(resnet, other, family):
  recipe = common.BACKBONE_RECIPES[family]
  assert other.optimizer.learning_rate == resnet.optimizer.learning_rate * recipe["lr_factor"]
  assert other.optimizer.warmup_steps == int(resnet.optimizer.warmup_steps * recipe["warmup_factor"])
  assert other.optimizer.weight_decay == recipe["weight_decay"]
  assert other.optimizer.grad_clip_norm == recipe["grad_clip_norm"]
  a, b = _flat(resnet), _flat(other)
  assert a.keys() == b.keys()
  assert {k for k in a if a[k] != b[k]} <= BACKBONE_KEYS
  assert other.model.name in common.BACKBONE_SIZES[family].values()


@pytest.mark.parametrize("family", sorted(common.BACKBONE_RECIPES))
@pytest.mark.parametrize("platform", ["cpu", "gpu", "tpu"])
def test_backbone_files_write_out_their_family_recipe(family, platform):
  for source in common.PRETRAIN_SOURCES:
    resnet = load(f"pretrain_{source}.py", f"platform={platform},soft=True")
    _check_recipe(resnet, load(f"pretrain_{family}.py", f"platform={platform},soft=True,source={source}"), family)
  for dataset, fold in (("iemocap", "fold=3,"), ("crema_d", "")):
    for arg in ("fraction=0.1,seed=2", "fraction=1.0,pretrained=peoples_speech,probe=True,runs_root=/r"):
      resnet = load(f"finetune_{dataset}.py", f"{fold}platform={platform},{arg}")
      other = load(f"finetune_{family}.py", f"dataset={dataset},{fold}platform={platform},{arg}")
      _check_recipe(resnet, other, family)
      assert other.init_from == (resnet.init_from and f"{resnet.init_from}_{other.model.name}")


@pytest.mark.parametrize("backbone", [b for b in common.DEMO_BACKBONES if b != common.DEMO_RESNET])
def test_demo_backbones_derive_from_the_demo_resnet(backbone):
  for name in ("demo_pretrain.py", "demo_finetune.py"):
    resnet, other = load(name, ""), load(name, f"backbone={backbone}")
    family = common.family_of(backbone)
    assert other.model.name == common.BACKBONE_SIZES[family]["tiny"] and other.model.width == 1.0
    resnet.model.width = 1.0
    _check_recipe(resnet, other, family)
    assert (other.sharding.mesh, other.sharding.rules) == ("data=-1", "replicated")


def test_experiment_spec_and_run_names():
  assert common.experiment_spec("f.py", {"fold": 1, "soft": False}, runlocal=True) == "f.py:fold=1,soft=False,runlocal"
  with pytest.raises(ValueError, match="data_root='/a,b' holds a comma"):
    common.experiment_spec("f.py", {"data_root": "/a,b"})
  assert common.pretrain_run_name("peoples_speech", "v", True) == "pretrain_peoples_speech_v_soft"
  assert common.pretrain_run_name("condensed_movies", "v", False, "conformer_s") == \
      "pretrain_condensed_movies_v_hard_conformer_s"
  with pytest.raises(ValueError, match="source='films'"):
    common.pretrain_run_name("films", "v", False)
  with pytest.raises(ValueError, match=r"size='l': expected one of \['m', 's', 'tiny'\] for conformer"):
    common.backbone_model("conformer", "l")
  assert common.iemocap_features_name("loso", 2) == "features_fold2"
  assert common.iemocap_features_name("lospk", 7) == "features_lospk_fold7"


def test_pretrain_cells_name_the_runs_the_finetuning_files_restore():
  arg = config_lib.parse_arg("platform=tpu,runlocal", platform="gpu", data_root="/d", runs_root="/r")
  cell = common.pretrain_cell("condensed_movies", {"taxonomy": "ekman7", "soft": True}, arg)
  assert cell["config"] == ("lanser_jax/experiments/pretrain_condensed_movies.py:taxonomy=ekman7,"
                            "template=conversation,labeler=entailment,soft=True,platform=tpu,data_root=/d,runlocal")
  finetune = load("finetune_crema_d.py", "pretrained=condensed_movies,taxonomy=ekman7,soft=True,runs_root=/r")
  assert finetune.init_from == f"/r/{cell['name']}"
