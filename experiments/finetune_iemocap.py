"""Fine-tuning on IEMOCAP (4 classes: neutral, happy+excited, sad, angry), one fold of one protocol.

  # features first: experiments/labeling/iemocap.py:fold=K writes <data_root>/iemocap/features_foldK
  # (protocol=P,fold=K: features_P_foldK); this file reads the folder of the same protocol and fold:
  # from a LanSER pre-training run (init_from = <runs_root>/pretrain_peoples_speech_fine40-...-hard):
  python -m lanser_jax.main \
      --config=experiments/finetune_iemocap.py:fold=1,fraction=0.1,seed=0,pretrained=peoples_speech \
      --workdir=/data/lanser/runs/iemocap/f1/ps/0.1/s0
  # from scratch (pretrained=none, the default) and a linear probe of the frozen backbone:
  ...finetune_iemocap.py:fold=1,fraction=1.0,seed=0
  ...finetune_iemocap.py:fold=1,fraction=1.0,seed=0,pretrained=condensed_movies,probe=True
  ...finetune_iemocap.py:protocol=lospk,fold=7,fraction=0.1,seed=0                # speaker 7 of 10
  # every fold x fraction x source x seed: python -m lanser_jax.sweep (experiments/sweeps/)
  python -m lanser_jax.main --config=experiments/finetune_iemocap.py:runlocal,platform=cpu,fold=1 \
      --workdir=/tmp/ft_local --config.data.dir=/tmp/lanser_synth

Arguments: protocol (loso, the default: test = the held-out session, validation = a stratified 20% of
the training sessions, as s3prl SUPERB ER | loso_spkval | lospk | emobox; see experiments/labeling/
iemocap.py), fold (required: 1..5, or 1..10 for lospk), fraction (of the train split only), seed
(training seed and label-subset seed), pretrained (none|peoples_speech|condensed_movies),
taxonomy/template/labeler/soft (which pre-training run), probe, platform, runlocal, data_root, runs_root. Ours: ~30 epochs of the labelled subset (at least 600 steps), AdamW 3e-4 at batch
64, dropout 0.2, 3-s crops, utterance logits averaged over 1.5-s-hop windows.
Expected cost: 600..2,100 steps of batch 64; minutes on one GPU (not measured); on 2 CPU cores ~4 min
per 100 steps of ResNet-50 (PERF_NOTES), so only runlocal there.
"""

from lanser_jax import paper_settings


def get_config(arg=None):
  # ~4,400 training utterances per fold (4 of the 5 sessions of the 5,531 kept; loso's validation takes
  # 20% of them, so ~3,500 train).
  # (lospk trains on the same four sessions.)
  c = paper_settings.finetune_config("iemocap", arg, num_train_utts=4400,
                                     extra_args={"fold": 0, "protocol": "loso"})
  return c
