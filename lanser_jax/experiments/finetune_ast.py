"""LanSER fine-tuning (IEMOCAP leave-one-session-out or CREMA-D) with a patch spectrogram transformer (ViT-B/16-like; size=b16).

  python -m lanser_jax.main \
      --config=lanser_jax/experiments/finetune_ast.py:dataset=iemocap,fold=1,fraction=0.1,pretrained=peoples_speech \
      --workdir=/data/lanser/runs/ast/iemocap/f1/ps/0.1/s0
  ...finetune_ast.py:dataset=crema_d,fraction=1.0,seed=1          # from scratch
  python -m lanser_jax.main --config=lanser_jax/experiments/finetune_ast.py:runlocal,platform=cpu,fold=1 \
      --workdir=/tmp/ft_ast_local --config.data.dir=/tmp/lanser_synth

Arguments: those of lanser_jax/experiments/finetune_iemocap.py (fold, fraction, seed, pretrained, taxonomy, template,
labeler, soft, probe, platform, runlocal, data_root, runs_root) plus dataset (iemocap|crema_d) and size
(b16). pretrained=... restores this backbone's pre-training run (lanser_jax/experiments/pretrain_ast.py, the
workdir name with the model name appended). Everything but backbone, optimiser and sharding as the ResNet-50
fine-tuning (lanser_jax/experiments/finetune_<dataset>.py, loaded and then changed). Expected cost: not measured on an accelerator.
"""

import os

from lanser_jax import config_lib

HERE = os.path.dirname(os.path.abspath(__file__))
# Backbone, optimiser and sharding: lanser_jax/experiments/pretrain_ast.py's values, written there once; the steps that
# combine them with the ResNet-50 fine-tuning: lanser_jax/experiments/finetune_conformer.py's.
PRETRAIN = config_lib.load_python_file(os.path.join(HERE, "pretrain_ast.py"))
CONFORMER = config_lib.load_python_file(os.path.join(HERE, "finetune_conformer.py"))


def get_config(arg=None):
  return CONFORMER.finetune(arg, PRETRAIN.BACKBONE)
