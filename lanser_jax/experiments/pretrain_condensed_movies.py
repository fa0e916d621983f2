"""LanSER pre-training: ResNet-50 on weak emotion labels of Condensed Movies (the paper's second source).

  # the weak labelling first (lanser_jax/experiments/labeling/condensed_movies.py), into
  # <data_root>/condensed_movies/<taxonomy>-<template>-<labeler>/features
  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_condensed_movies.py:platform=gpu \
      --workdir=/data/lanser/runs/pretrain_condensed_movies_fine40-conversation-entailment_hard
  ...pretrain_condensed_movies.py:platform=tpu,taxonomy=ekman7,soft=True   # ablations as for People's Speech
  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_condensed_movies.py:runlocal,platform=cpu \
      --workdir=/tmp/cm_local --config.data.dir=/tmp/lanser_synth

Arguments: as lanser_jax/experiments/pretrain_peoples_speech.py (platform, runlocal, data_root, taxonomy,
template, labeler, soft). Everything as the People's Speech run but three values: the data folder; no
held-out split (the Condensed Movies adapter writes every clip to train, so eval_split is "" and the last
checkpoint is the one fine-tuning starts from: init_from_step "best" falls back to the latest); and 30k
steps (ours), as the corpus (~1,100 h of clips) is ~25x smaller than People's Speech.
Expected cost: 15.4M crops (platform=gpu) at the measured 14,620 examples/s (ResNet-50, bfloat16, batch
256, one H200; benchmarks/README.md) are ~18 H200-minutes of train steps; the rate at 64 examples per
device of an 8-GPU node was not measured. Use platform=cpu only with runlocal.
"""

from lanser_jax import config_lib
from lanser_jax.experiments import common

SOURCE = "condensed_movies"


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **common.common_args(**common.WEAK_LABEL_ARGS))
  variant = common.weak_variant(arg.taxonomy, arg.template, arg.labeler)  # the labelling's folder name
  c = config_lib.base_config()
  c.data.dir = common.pretrain_data_dir(SOURCE, arg.data_root, variant)
  c.data.target = "scores" if arg.soft else "label"
  c.data.eval_split = ""  # the adapter writes every clip to train: the last checkpoint is the one used
  c.data.test_split = ""  # weak labels are no test: fine-tuning and zero-shot are the evaluations
  c.data.crop_frames = 300  # ours: 3 s random crops
  c.data.eval_hop_frames = 150
  c.model.name = "resnet50"  # paper
  c.num_train_steps = 30_000  # ours: the corpus (~1,100 h of clips) is ~25x smaller than People's Speech
  c.optimizer.name = "adamw"
  c.optimizer.warmup_steps = 2000
  c.optimizer.weight_decay = 1e-4
  c.label_smoothing = 0.0 if arg.soft else 0.1  # ours: weak hard labels are noisy
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.checkpoint_every_steps = 2500
  c.keep_checkpoints = 2
  common.set_platform(c, common.PRETRAIN_PLATFORMS, arg.platform)  # batch 32 / 512 / 1024, dtype, workers
  # Ours: 1e-3 at batch 256, scaled linearly with the global batch (Goyal et al. 2017).
  c.optimizer.learning_rate = 1e-3 * (c.batch_size / 256)
  return config_lib.finalize(c, arg)
