"""LanSER fine-tuning (IEMOCAP leave-one-session-out or CREMA-D) with a Conformer (Gulati et al. 2020; size=s|m, default s).

  python -m lanser_jax.main \
      --config=lanser_jax/experiments/finetune_conformer.py:dataset=iemocap,fold=1,fraction=0.1,pretrained=peoples_speech \
      --workdir=/data/lanser/runs/conformer/iemocap/f1/ps/0.1/s0
  ...finetune_conformer.py:dataset=crema_d,fraction=1.0,seed=1          # from scratch
  python -m lanser_jax.main --config=lanser_jax/experiments/finetune_conformer.py:runlocal,platform=cpu,fold=1 \
      --workdir=/tmp/ft_conformer_local --config.data.dir=/tmp/lanser_synth

Arguments: those of lanser_jax/experiments/finetune_iemocap.py (fold, fraction, seed, pretrained, taxonomy, template,
labeler, soft, probe, platform, runlocal, data_root, runs_root) plus dataset (iemocap|crema_d) and size
(s|m). pretrained=... restores this backbone's pre-training run (lanser_jax/experiments/pretrain_conformer.py, the
workdir name with the model name appended). Everything but backbone, optimiser and sharding as the ResNet-50
fine-tuning (lanser_jax/experiments/finetune_<dataset>.py, loaded and then changed). Expected cost: not measured on an accelerator.
"""

import os

from lanser_jax import config_lib
from lanser_jax.experiments import common as layout

HERE = os.path.dirname(os.path.abspath(__file__))
# The ResNet-50 fine-tuning of each dataset (default protocol): data, steps, crops, label fractions and
# platform sizes come from it unchanged, so a backbone comparison changes the backbone and its optimiser only.
RESNET_FILES = {"iemocap": "finetune_iemocap.py", "crema_d": "finetune_crema_d.py"}
# Backbone, optimiser and sharding: lanser_jax/experiments/pretrain_conformer.py's values, written there once.
PRETRAIN = config_lib.load_python_file(os.path.join(HERE, "pretrain_conformer.py"))


def get_config(arg=None):
  return finetune(arg, PRETRAIN.BACKBONE)


def finetune(arg, backbone: dict):
  """The ResNet-50 fine-tuning of `dataset` with `backbone` (lanser_jax/experiments/finetune_ast.py runs it with its
  own); pretrained=... restores the same backbone's pre-training run."""
  parsed = config_lib.parse_arg(arg, **layout.common_args(
      fraction=1.0, seed=0, pretrained="none", taxonomy="fine40", template="conversation",
      labeler="entailment", soft=False, probe=False, fold=0, dataset="iemocap", size=backbone["default_size"]))
  if parsed.dataset not in layout.FINETUNE_DATASETS:
    raise ValueError(f"dataset={parsed.dataset!r}: expected one of {layout.FINETUNE_DATASETS}")
  drop = ("dataset", "size", "runlocal") + (("fold",) if parsed.dataset == "crema_d" else ())
  if parsed.dataset == "crema_d" and parsed.fold:
    raise ValueError("dataset=crema_d has no folds: leave fold unset")
  resnet = os.path.join(HERE, RESNET_FILES[parsed.dataset])
  c = config_lib.load_experiment(f"{resnet}:{config_lib.drop_args(arg, drop)}")
  if c.init_from:  # this backbone's pre-training run: the ResNet-50 run's name + _<model name>
    c.init_from += f"_{PRETRAIN.model_name(backbone, parsed.size)}"
  return PRETRAIN.with_backbone(c, backbone, parsed.size, parsed.platform, parsed.runlocal)
