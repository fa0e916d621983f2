"""LanSER pre-training with a Conformer (Gulati et al. 2020; size=s|m, default s) instead of ResNet-50.

  python -m lanser_jax.main --config=experiments/pretrain_conformer.py:platform=gpu \
      --workdir=/data/lanser/runs/pretrain_peoples_speech_fine40-conversation-entailment_hard_conformer_s
  ...pretrain_conformer.py:platform=tpu,source=condensed_movies,size=m
  python -m lanser_jax.main --config=experiments/pretrain_conformer.py:runlocal,platform=cpu \
      --workdir=/tmp/pt_conformer_local --config.data.dir=/tmp/lanser_synth

Arguments: those of experiments/pretrain_peoples_speech.py (platform, runlocal, data_root, taxonomy, template,
labeler, soft) plus source (peoples_speech|condensed_movies) and size (s|m). Data, steps and crops are
the ResNet-50 run's (lanser_jax/paper_settings.py); backbone, optimiser and sharding are
lanser_jax/backbone_settings.py's (ours, untuned). runlocal: the tiny size, sharded code path.
Expected cost: not measured on an accelerator (see README "Backbones" for the benchmark command).
"""

from lanser_jax import backbone_settings


def get_config(arg=None):
  return backbone_settings.pretrain_config("conformer", arg)
