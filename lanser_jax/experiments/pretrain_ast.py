"""LanSER pre-training with a patch spectrogram transformer (ViT-B/16-like; size=b16) instead of ResNet-50.

  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_ast.py:platform=gpu \
      --workdir=/data/lanser/runs/pretrain_peoples_speech_fine40-conversation-entailment_hard_ast
  ...pretrain_ast.py:platform=tpu,source=condensed_movies,size=b16
  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_ast.py:runlocal,platform=cpu \
      --workdir=/tmp/pt_ast_local --config.data.dir=/tmp/lanser_synth

Arguments: those of lanser_jax/experiments/pretrain_peoples_speech.py (platform, runlocal, data_root, taxonomy, template,
labeler, soft) plus source (peoples_speech|condensed_movies) and size (b16). Data, steps and crops are
the ResNet-50 run's (lanser_jax/experiments/pretrain_<source>.py, loaded and then changed); backbone,
optimiser and sharding are set below (ours, untuned). runlocal: the tiny size, sharded code path.
Expected cost: not measured on an accelerator (see README "Backbones" for the benchmark command).
"""

import os

from lanser_jax import config_lib

# Source files and the steps that combine them with a backbone: lanser_jax/experiments/pretrain_conformer.py's.
CONFORMER = config_lib.load_python_file(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "pretrain_conformer.py"))
# Ours (untuned): transformer recipes take a smaller peak learning rate than the ResNet-50's (lr_factor: the
# ResNet file has already scaled it with the platform's batch), decoupled weight decay 0.05 as ViTs use
# (Dosovitskiy et al. 2021 used 0.1 with Adam), global-norm clipping at 1, and a warmup twice as long.
# mesh: mesh and sharding rules per platform (lanser_jax/engine/sharding.py).
BACKBONE = dict(
    family="ast",
    sizes={"b16": "ast", "tiny": "ast_tiny"},  # tiny: what runlocal uses
    default_size="b16",
    lr_factor=0.25, weight_decay=0.05, grad_clip_norm=1.0, warmup_factor=2.0,
    # ViT-B's AdamW state (85M parameters x 3 x 4 bytes, ~1 GB) fits replicated on one accelerator; it is
    # split over fsdp anyway on GPU/TPU, so that the larger sizes a user adds fit too and the sharded path
    # is the one that is exercised. CPU stays replicated.
    mesh={"cpu": ("data=-1", "replicated"), "gpu": ("data=-1,fsdp=8", "fsdp"), "tpu": ("data=-1,fsdp=4", "fsdp")},
)


def get_config(arg=None):
  return CONFORMER.pretrain(arg, BACKBONE)
