"""LanSER pre-training: ResNet-50 on weak emotion labels of Condensed Movies (the paper's second source).

  # the weak labelling first, with manifest.adapter="condensed_movies" (input_pipeline/adapters), into
  # <data_root>/condensed_movies/<taxonomy>-<template>-<labeler>/features
  python -m lanser_jax.main --config=experiments/pretrain_condensed_movies.py:platform=gpu \
      --workdir=/data/lanser/runs/pretrain_condensed_movies_fine40-conversation-entailment_hard
  ...pretrain_condensed_movies.py:platform=tpu,taxonomy=ekman7,soft=True   # ablations as for PS
  python -m lanser_jax.main --config=experiments/pretrain_condensed_movies.py:runlocal,platform=cpu \
      --workdir=/tmp/cm_local --config.data.dir=/tmp/lanser_synth

Arguments: as experiments/pretrain_peoples_speech.py.
The Condensed Movies adapter writes every clip to the train split, so there is no held-out split:
eval_split is "" and the last checkpoint is the one fine-tuning starts from (init_from_step "best"
falls back to the latest). Ours: 30k steps, as the corpus (~1,100 h of clips) is ~25x smaller than
People's Speech. Expected cost (not measured, see the People's Speech file): ~1.5 h on one 8-GPU node.
"""

from lanser_jax import paper_settings


def get_config(arg=None):
  return paper_settings.pretrain_config("condensed_movies", arg, num_train_steps=30_000, eval_split="")
