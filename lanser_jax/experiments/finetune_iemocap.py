"""Fine-tuning on IEMOCAP (4 classes: neutral, happy+excited, sad, angry), one fold of one protocol.

  # features first: lanser_jax/experiments/labeling/iemocap.py:fold=K writes <data_root>/iemocap/features_foldK
  # (protocol=P,fold=K: features_P_foldK); this file reads the folder of the same protocol and fold:
  # from a LanSER pre-training run (init_from = <runs_root>/pretrain_peoples_speech_fine40-...-hard):
  python -m lanser_jax.main \
      --config=lanser_jax/experiments/finetune_iemocap.py:fold=1,fraction=0.1,seed=0,pretrained=peoples_speech \
      --workdir=/data/lanser/runs/iemocap/f1/ps/0.1/s0
  # from scratch (pretrained=none, the default) and a linear probe of the frozen backbone:
  ...finetune_iemocap.py:fold=1,fraction=1.0,seed=0
  ...finetune_iemocap.py:fold=1,fraction=1.0,seed=0,pretrained=condensed_movies,probe=True
  ...finetune_iemocap.py:protocol=lospk,fold=7,fraction=0.1,seed=0                # speaker 7 of 10
  # every fold x fraction x source x seed: python -m lanser_jax.tools.sweep (lanser_jax/experiments/sweeps/)
  python -m lanser_jax.main --config=lanser_jax/experiments/finetune_iemocap.py:runlocal,platform=cpu,fold=1 \
      --workdir=/tmp/ft_local --config.data.dir=/tmp/lanser_synth

Arguments: protocol (loso, the default: test = the held-out session, validation = a stratified 20% of
the training sessions, as s3prl SUPERB ER | loso_spkval | lospk | emobox; see lanser_jax/experiments/labeling/
iemocap.py), fold (required: 1..5, or 1..10 for lospk), fraction (of the train split only), seed
(training seed and label-subset seed), pretrained (none|peoples_speech|condensed_movies),
taxonomy/template/labeler/soft (which pre-training run), probe, platform, runlocal, data_root, runs_root.
Ours: ~30 epochs of the labelled subset (at least 600 steps), AdamW 3e-4 at batch 64, dropout 0.2, 3-s
crops, utterance logits averaged over 1.5-s-hop windows.
Expected cost: 600..2,062 steps of batch 64, i.e. 3..9 s of train steps at the measured 14,620 examples/s
(ResNet-50, bfloat16, batch 256, one H200; benchmarks/README.md): start-up, compilation and evaluation
dominate, not measured. On CPU (batch 32) the measured 8.22 examples/s (ResNet-50, float32, batch 16, 2 CPU
cores; benchmarks/README.md) make 100 steps ~6.5 min: use platform=cpu only with runlocal.
"""

from lanser_jax import config_lib
from lanser_jax.experiments import common

DATASET = "iemocap"


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **common.common_args(**common.FINETUNE_ARGS, fold=0, protocol="loso"))
  c = config_lib.base_config()
  c.seed = arg.seed
  c.data.dir = common.finetune_data_dir(DATASET, arg.data_root, arg.fold, arg.protocol)
  c.data.label_fraction = arg.fraction  # of the train split only
  c.data.subset_seed = arg.seed  # the seed also draws the label subset: seeds average over both
  c.data.crop_frames = 300  # ours: 3-s crops; utterance logits averaged over 1.5-s-hop windows
  c.data.eval_hop_frames = 150
  c.model.name = "resnet50"  # paper
  c.model.dropout_rate = 0.2  # ours: the labelled sets are small
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 1e-4
  c.log_every_steps = 50
  c.keep_checkpoints = 1
  # The pre-training run of lanser_jax/experiments/pretrain_<pretrained>.py ("" for pretrained=none).
  c.init_from = common.pretrained_init(arg)
  if arg.probe:  # linear probe: frozen backbone, the head alone trains
    if arg.pretrained == "none":
      raise ValueError("probe=True (linear probe) needs a pretrained backbone: set pretrained=...")
    c.freeze_backbone = True
    c.model.dropout_rate = 0.0
    c.specaugment.enabled = False
  common.set_platform(c, common.FINETUNE_PLATFORMS, arg.platform)  # batch 32 / 64 / 64, dtype, workers
  # Ours: ~30 epochs of the labelled subset, at least 600 steps so that 10% subsets are not under-trained.
  c.num_train_steps = max(600, int(30 * common.NUM_TRAIN_UTTS[DATASET] * arg.fraction / c.batch_size))
  c.optimizer.warmup_steps = c.num_train_steps // 20
  c.eval_every_steps = max(100, c.num_train_steps // 15)
  c.checkpoint_every_steps = c.eval_every_steps
  # Ours: AdamW 3e-4 at batch 64 (a linear head on fixed features takes a larger step, 1e-2), scaled
  # linearly with the global batch.
  c.optimizer.learning_rate = (1e-2 if arg.probe else 3e-4) * (c.batch_size / 64)
  return config_lib.finalize(c, arg)
