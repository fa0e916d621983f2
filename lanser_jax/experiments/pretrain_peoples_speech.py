"""LanSER pre-training: ResNet-50 on weak emotion labels of People's Speech (the paper's main source).

  # the weak labelling first (lanser_jax/experiments/labeling/peoples_speech.py), into the folder that
  # the arguments name: <data_root>/peoples_speech/<taxonomy>-<template>-<labeler>/features
  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_peoples_speech.py:platform=gpu \
      --workdir=/data/lanser/runs/pretrain_peoples_speech_fine40-conversation-entailment_hard
  # ablations, one argument each (folder names: lanser_jax/experiments/common.py):
  ...pretrain_peoples_speech.py:platform=tpu,taxonomy=ekman7
  ...pretrain_peoples_speech.py:platform=gpu,soft=True          # score vectors as targets
  ...pretrain_peoples_speech.py:platform=gpu,template=i_feel
  ...pretrain_peoples_speech.py:platform=gpu,labeler=sentence_encoder
  # seconds-long check of the same code path on any feature folder:
  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_peoples_speech.py:runlocal,platform=cpu \
      --workdir=/tmp/pt_local --config.data.dir=/tmp/lanser_synth

Arguments: platform (cpu|gpu|tpu; default gpu), runlocal, data_root, taxonomy (fine40|ekman7), template
(conversation|speaker|i_feel|bare), labeler (entailment|sentence_encoder), soft.
Ours, not the paper's: 100k steps at global batch 512 (GPU) / 1024 (TPU), i.e. ~51M / 102M 3-s crops,
a few passes over the ~30k h of People's Speech that survive the transcript filters.
Expected cost: 51.2M crops (platform=gpu) at the measured 14,620 examples/s (ResNet-50, bfloat16, batch
256, one H200; benchmarks/README.md) are ~1.0 H200-hour of train steps, evaluation not included; the rate
at platform=gpu's 64 examples per device of an 8-GPU node was not measured. platform=cpu (3.2M crops of
batch 32) at the measured 8.22 examples/s (ResNet-50, float32, batch 16, 2 CPU cores; benchmarks/README.md)
would take ~4.5 days: use it only with runlocal.
"""

from lanser_jax import config_lib
from lanser_jax.experiments import common

SOURCE = "peoples_speech"


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **common.common_args(**common.WEAK_LABEL_ARGS))
  variant = common.weak_variant(arg.taxonomy, arg.template, arg.labeler)  # the labelling's folder name
  c = config_lib.base_config()
  c.data.dir = common.pretrain_data_dir(SOURCE, arg.data_root, variant)
  c.data.target = "scores" if arg.soft else "label"
  # People's Speech ships train/validation/test: agreement with the held-out weak labels of validation
  # picks the best checkpoint.
  c.data.eval_split = "validation"
  c.data.test_split = ""  # weak labels are no test: fine-tuning and zero-shot are the evaluations
  c.data.crop_frames = 300  # ours: 3 s random crops, as most transcribed segments are longer
  c.data.eval_hop_frames = 150
  c.model.name = "resnet50"  # paper
  c.num_train_steps = 100_000
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
