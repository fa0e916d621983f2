"""Fine-tuning on CREMA-D (6 classes), speaker-independent 70/10/20 split.

  # features first: experiments/labeling/crema_d.py writes <data_root>/crema_d/features
  python -m lanser_jax.main \
      --config=experiments/finetune_crema_d.py:fraction=0.1,seed=0,pretrained=peoples_speech \
      --workdir=/data/lanser/runs/crema_d/ps/0.1/s0
  ...finetune_crema_d.py:fraction=1.0,seed=0                                   # from scratch
  ...finetune_crema_d.py:fraction=1.0,seed=0,pretrained=peoples_speech,probe=True  # linear probe
  python -m lanser_jax.main --config=experiments/finetune_crema_d.py:runlocal,platform=cpu \
      --workdir=/tmp/ft_local --config.data.dir=/tmp/lanser_synth

Arguments: fraction, seed, pretrained (none|peoples_speech|condensed_movies), taxonomy/template/labeler/
soft (which pre-training run), probe, platform, runlocal, data_root, runs_root.
Ours: as experiments/finetune_iemocap.py (~30 epochs, at least 600 steps, AdamW 3e-4 at batch 64).
Expected cost: 600..2,400 steps of batch 64; minutes on one GPU (not measured); only runlocal on CPU.
"""

from lanser_jax import paper_settings


def get_config(arg=None):
  # ~5,200 training clips (70% of 7,442; the split is by speaker).
  return paper_settings.finetune_config("crema_d", arg, num_train_utts=5200)
