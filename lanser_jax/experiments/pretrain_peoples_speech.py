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
Expected cost: not measured on an accelerator yet. From PERF_NOTES (6 examples/s for a ResNet-50 step
on 2 CPU cores) a GPU is assumed to do ~3,000 examples/s: ~5 h on one 8-GPU node; budget a day.
On CPU (platform=cpu) the full run is out of reach (months): use it only with runlocal.
"""

from lanser_jax import config_lib
from lanser_jax.experiments import common as layout

SOURCE = "peoples_speech"
# Per platform (ours): global batch, evaluation batch, compute dtype, Grain workers per host. GPU = one
# 8 x 80 GB node, TPU = a v4-32 slice (16 chips, 4 hosts), CPU = a workstation. Global batches are
# multiples of the device count.
PLATFORMS = {
    "cpu": dict(batch_size=32, eval_batch_size=64, dtype="float32", num_workers=1),
    "gpu": dict(batch_size=512, eval_batch_size=256, dtype="bfloat16", num_workers=8),
    "tpu": dict(batch_size=1024, eval_batch_size=512, dtype="bfloat16", num_workers=16),
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **layout.common_args(taxonomy="fine40", template="conversation",
                                                        labeler="entailment", soft=False))
  variant = layout.weak_variant(arg.taxonomy, arg.template, arg.labeler)  # the labelling's folder name
  c = config_lib.base_config()
  c.data.dir = f"{arg.data_root}/{SOURCE}/{variant}/features"
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
  platform = config_lib.choose(PLATFORMS, arg.platform, "platform")
  c.batch_size = platform["batch_size"]
  c.eval_batch_size = platform["eval_batch_size"]
  c.dtype = platform["dtype"]
  c.data.num_workers = platform["num_workers"]
  # Ours: 1e-3 at batch 256, scaled linearly with the global batch (Goyal et al. 2017).
  c.optimizer.learning_rate = 1e-3 * (c.batch_size / 256)
  return config_lib.finalize(c, arg)
