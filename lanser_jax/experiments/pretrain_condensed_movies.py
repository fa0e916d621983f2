"""LanSER pre-training: ResNet-50 on weak emotion labels of Condensed Movies (the paper's second source).

  # the weak labelling first, with manifest.adapter="condensed_movies" (input_pipeline/adapters), into
  # <data_root>/condensed_movies/<taxonomy>-<template>-<labeler>/features
  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_condensed_movies.py:platform=gpu \
      --workdir=/data/lanser/runs/pretrain_condensed_movies_fine40-conversation-entailment_hard
  ...pretrain_condensed_movies.py:platform=tpu,taxonomy=ekman7,soft=True   # ablations as for PS
  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_condensed_movies.py:runlocal,platform=cpu \
      --workdir=/tmp/cm_local --config.data.dir=/tmp/lanser_synth

Arguments: as lanser_jax/experiments/pretrain_peoples_speech.py.
The Condensed Movies adapter writes every clip to the train split, so there is no held-out split:
eval_split is "" and the last checkpoint is the one fine-tuning starts from (init_from_step "best"
falls back to the latest). Ours: 30k steps, as the corpus (~1,100 h of clips) is ~25x smaller than
People's Speech. Expected cost (not measured, see the People's Speech file): ~1.5 h on one 8-GPU node.
"""

import os

from lanser_jax import config_lib
from lanser_jax.experiments import common as layout

# Everything else as lanser_jax/experiments/pretrain_peoples_speech.py (model, crops, optimiser, platform sizes), which
# this file loads with the same arguments and changes below.
PEOPLES_SPEECH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrain_peoples_speech.py")


def get_config(arg=None):
  parsed = config_lib.parse_arg(arg, **layout.common_args(taxonomy="fine40", template="conversation",
                                                           labeler="entailment", soft=False))
  c = config_lib.load_experiment(f"{PEOPLES_SPEECH}:{config_lib.drop_args(arg, ('runlocal',))}")
  variant = layout.weak_variant(parsed.taxonomy, parsed.template, parsed.labeler)
  c.data.dir = f"{parsed.data_root}/condensed_movies/{variant}/features"
  c.data.eval_split = ""  # the adapter writes every clip to train: the last checkpoint is the one used
  c.num_train_steps = 30_000  # ours: the corpus (~1,100 h of clips) is ~25x smaller than People's Speech
  return config_lib.finalize(c, parsed)
