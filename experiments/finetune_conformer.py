"""LanSER fine-tuning (IEMOCAP leave-one-session-out or CREMA-D) with a Conformer (Gulati et al. 2020; size=s|m, default s).

  python -m lanser_jax.main \
      --config=experiments/finetune_conformer.py:dataset=iemocap,fold=1,fraction=0.1,pretrained=peoples_speech \
      --workdir=/data/lanser/runs/conformer/iemocap/f1/ps/0.1/s0
  ...finetune_conformer.py:dataset=crema_d,fraction=1.0,seed=1          # from scratch
  python -m lanser_jax.main --config=experiments/finetune_conformer.py:runlocal,platform=cpu,fold=1 \
      --workdir=/tmp/ft_conformer_local --config.data.dir=/tmp/lanser_synth

Arguments: those of experiments/finetune_iemocap.py (fold, fraction, seed, pretrained, taxonomy, template,
labeler, soft, probe, platform, runlocal, data_root, runs_root) plus dataset (iemocap|crema_d) and size
(s|m). pretrained=... restores this backbone's pre-training run (experiments/pretrain_conformer.py, the
workdir name with the model name appended). Everything but backbone, optimiser and sharding as the ResNet-50
fine-tuning. Expected cost: not measured on an accelerator.
"""

from lanser_jax import backbone_settings


def get_config(arg=None):
  return backbone_settings.finetune_config("conformer", arg)
