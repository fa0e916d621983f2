"""LanSER pre-training: ResNet-50 on weak emotion labels of People's Speech (the paper's main source).

  # the weak labelling first (experiments/labeling/peoples_speech.py), into the folder that
  # the arguments name: <data_root>/peoples_speech/<taxonomy>-<template>-<labeler>/features
  python -m lanser_jax.main --config=experiments/pretrain_peoples_speech.py:platform=gpu \
      --workdir=/data/lanser/runs/pretrain_peoples_speech_fine40-conversation-entailment_hard
  # ablations, one argument each (see lanser_jax/paper_settings.py for the folder names):
  ...pretrain_peoples_speech.py:platform=tpu,taxonomy=ekman7
  ...pretrain_peoples_speech.py:platform=gpu,soft=True          # score vectors as targets
  ...pretrain_peoples_speech.py:platform=gpu,template=i_feel
  ...pretrain_peoples_speech.py:platform=gpu,labeler=sentence_encoder
  # seconds-long check of the same code path on any feature folder:
  python -m lanser_jax.main --config=experiments/pretrain_peoples_speech.py:runlocal,platform=cpu \
      --workdir=/tmp/pt_local --config.data.dir=/tmp/lanser_synth

Arguments: platform (cpu|gpu|tpu; default gpu), runlocal, data_root, taxonomy (fine40|ekman7), template
(conversation|speaker|i_feel|bare), labeler (entailment|sentence_encoder), soft.
Ours, not the paper's: 100k steps at global batch 512 (GPU) / 1024 (TPU), i.e. ~51M / 102M 3-s crops,
a few passes over the ~30k h of People's Speech that survive the transcript filters.
Expected cost: not measured on an accelerator yet. From PERF_NOTES (6 examples/s for a ResNet-50 step
on 2 CPU cores) a GPU is assumed to do ~3,000 examples/s: ~5 h on one 8-GPU node; budget a day.
On CPU (platform=cpu) the full run is out of reach (months): use it only with runlocal.
"""

from lanser_jax import paper_settings


def get_config(arg=None):
  # People's Speech ships train/validation/test: validation weak labels pick the best checkpoint.
  return paper_settings.pretrain_config("peoples_speech", arg, num_train_steps=100_000,
                                       eval_split="validation")
