"""Fine-tuning on CREMA-D (6 classes), on the split chosen by `split` (default actor_seeded).

  # features first: lanser_jax/experiments/labeling/crema_d.py writes <data_root>/crema_d/features (split=emobox:
  # crema_d/features_emobox; split=tfds: crema_d_tfds/features); this file reads the same split's folder:
  python -m lanser_jax.main \
      --config=lanser_jax/experiments/finetune_crema_d.py:fraction=0.1,seed=0,pretrained=peoples_speech \
      --workdir=/data/lanser/runs/crema_d/ps/0.1/s0
  ...finetune_crema_d.py:fraction=1.0,seed=0                                   # from scratch
  ...finetune_crema_d.py:fraction=1.0,seed=0,pretrained=peoples_speech,probe=True  # linear probe
  python -m lanser_jax.main --config=lanser_jax/experiments/finetune_crema_d.py:runlocal,platform=cpu \
      --workdir=/tmp/ft_local --config.data.dir=/tmp/lanser_synth

Arguments: split (actor_seeded: the project's speaker-independent 70/10/20 by actor, seed 0 | tfds: TFDS
crema_d's splits | emobox: EmoBox's fold 1), fraction (of the train split only), seed, pretrained
(none|peoples_speech|condensed_movies), taxonomy/template/labeler/soft (which pre-training run), probe,
platform, runlocal, data_root, runs_root.
Ours: as lanser_jax/experiments/finetune_iemocap.py (~30 epochs, at least 600 steps, AdamW 3e-4 at batch 64).
Expected cost: 600..2,437 steps of batch 64, i.e. 3..11 s of train steps at the measured 14,620 examples/s
(ResNet-50, bfloat16, batch 256, one H200; benchmarks/README.md): start-up, compilation and evaluation
dominate, not measured. Use platform=cpu only with runlocal (see finetune_iemocap.py).
"""

from lanser_jax import config_lib
from lanser_jax.experiments import common

DATASET = "crema_d"


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **common.common_args(**common.FINETUNE_ARGS, split="actor_seeded"))
  c = config_lib.base_config()
  c.seed = arg.seed
  c.data.dir = common.finetune_data_dir(DATASET, arg.data_root, 0, arg.split)
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
