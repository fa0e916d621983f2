"""Demo pre-training: a narrow ResNet-18 on the weak labels of the synthesised pre-training corpus.

  python -m lanser_jax.main --config=lanser_jax/experiments/demo_pretrain.py --workdir=WORK/pretrain \
      --config.data.dir=WORK/labels_pretrain/features

Run by lanser_jax/demo/end_to_end.py. Same trainer as the full-scale pre-training; only the sizes differ so
that the whole demo fits in 15 minutes on 2 CPU cores. Arguments: runlocal, soft (train on score vectors),
backbone (resnet50: the narrow ResNet above, the demo's own; conformer | ast: their tiny sizes with the
optimiser recipe of lanser_jax/experiments/pretrain_conformer.py / pretrain_ast.py, for `--backbones` of the demo).
"""

import os

from lanser_jax import config_lib

HERE = os.path.dirname(os.path.abspath(__file__))
BACKBONE_FILES = {"conformer": "pretrain_conformer.py", "ast": "pretrain_ast.py"}
BACKBONES = ("resnet50",) + tuple(BACKBONE_FILES)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, soft=False, backbone="resnet50")
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
  return with_backbone(config_lib.finalize(c, arg), arg.backbone)


def with_backbone(c, backbone: str):
  """The demo config with `backbone` at its tiny size (conformer_tiny, ast_tiny: lanser_jax/models/conformer.py,
  spectrogram_transformer.py) and its file's optimiser recipe (peak learning rate and warmup as factors of
  the ResNet's, weight decay, clipping), replicated on CPU; data, steps and crops stay the ResNet's, so only
  the backbone and its optimiser differ between the rows of the report's backbone table. demo_finetune.py
  uses it too."""
  if backbone not in BACKBONES:
    raise ValueError(f"backbone={backbone!r}: expected one of {BACKBONES}")
  if backbone == "resnet50":
    return c
  # The combining steps live in pretrain_conformer.py; each backbone's recipe in its own file.
  combine = config_lib.load_python_file(os.path.join(HERE, BACKBONE_FILES["conformer"]))
  recipe = config_lib.load_python_file(os.path.join(HERE, BACKBONE_FILES[backbone])).BACKBONE
  c.model.width = 1.0  # a ResNet knob: the transformers' sizes are fixed
  return combine.with_backbone(c, recipe, "tiny", "cpu", False)
