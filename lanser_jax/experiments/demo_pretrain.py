"""Demo pre-training: a narrow ResNet-18 on the weak labels of the synthesised pre-training corpus.

  python -m lanser_jax.main --config=lanser_jax/experiments/demo_pretrain.py --workdir=WORK/pretrain \
      --config.data.dir=WORK/labels_pretrain/features

Run by lanser_jax/demo/end_to_end.py. Same trainer as the full-scale pre-training; only the sizes differ so
that the whole demo fits in 15 minutes on 2 CPU cores. Arguments: runlocal, soft (train on score vectors),
backbone (resnet18_w0.25: the narrow ResNet above, the demo's own | conformer_tiny |
spectrogram_transformer_tiny: the tiny sizes in its place, with their family's optimiser recipe,
common.demo_backbone, for `--backbones` of the demo).
"""

from lanser_jax import config_lib
from lanser_jax.experiments import common


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, soft=False, backbone=common.DEMO_RESNET)
  c = config_lib.base_config()
  c.data.target = "scores" if arg.soft else "label"
  c.data.crop_frames = 200  # 2 s: most demo utterances fit whole
  c.data.eval_hop_frames = 100
  c.data.test_split = ""
  c.data.num_workers = 0  # 2 cores: the trainer needs both
  c.model.name = "resnet18"
  c.model.width = 0.25
  c.batch_size = 32
  c.eval_batch_size = 64
  c.num_train_steps = 500
  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 30
  c.log_every_steps = 25
  c.eval_every_steps = 125
  c.checkpoint_every_steps = 125
  c.best_metric = "ua"
  c = config_lib.finalize(c, arg)
  # Data, steps and crops stay the ResNet's: only the backbone and its optimiser differ between the rows
  # of the demo report's backbone table.
  return common.demo_backbone(c, arg.backbone)
