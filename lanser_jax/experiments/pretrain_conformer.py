"""LanSER pre-training with a Conformer (Gulati et al. 2020; size=s|m, default s) instead of ResNet-50.

  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_conformer.py:platform=gpu \
      --workdir=/data/lanser/runs/pretrain_peoples_speech_fine40-conversation-entailment_hard_conformer_s
  ...pretrain_conformer.py:platform=tpu,source=condensed_movies,size=m
  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_conformer.py:runlocal,platform=cpu \
      --workdir=/tmp/pt_conformer_local --config.data.dir=/tmp/lanser_synth

Arguments: those of lanser_jax/experiments/pretrain_peoples_speech.py (platform, runlocal, data_root, taxonomy, template,
labeler, soft) plus source (peoples_speech|condensed_movies) and size (s|m). Data, steps and crops are
the ResNet-50 run's (lanser_jax/experiments/pretrain_<source>.py, loaded and then changed); backbone,
optimiser and sharding are set below (ours, untuned). runlocal: the tiny size, sharded code path.
Expected cost: not measured on an accelerator (see README "Backbones" for the benchmark command).
"""

import os

from lanser_jax import config_lib
from lanser_jax.experiments import common as layout

HERE = os.path.dirname(os.path.abspath(__file__))
# The ResNet-50 pre-training of each source: data, steps, crops and platform sizes come from it unchanged,
# so a backbone comparison changes the backbone and its optimiser only.
RESNET_FILES = {"peoples_speech": "pretrain_peoples_speech.py", "condensed_movies": "pretrain_condensed_movies.py"}
# Ours (untuned): transformer recipes take a smaller peak learning rate than the ResNet-50's (lr_factor: the
# ResNet file has already scaled it with the platform's batch), decoupled weight decay 0.05 as ViTs use
# (Dosovitskiy et al. 2021 used 0.1 with Adam), global-norm clipping at 1, and a warmup twice as long.
# mesh: mesh and sharding rules per platform (lanser_jax/engine/sharding.py).
BACKBONE = dict(
    family="conformer",
    sizes={"s": "conformer_s", "m": "conformer_m", "tiny": "conformer_tiny"},  # tiny: what runlocal uses
    default_size="s",
    lr_factor=0.5, weight_decay=0.05, grad_clip_norm=1.0, warmup_factor=2.0,
    # A Conformer's state is small: replicated everywhere.
    mesh={"cpu": ("data=-1", "replicated"), "gpu": ("data=-1", "replicated"), "tpu": ("data=-1", "replicated")},
)


def get_config(arg=None):
  return pretrain(arg, BACKBONE)


def pretrain(arg, backbone: dict):
  """The ResNet-50 pre-training of `source` with `backbone`'s model, optimiser and sharding
  (lanser_jax/experiments/pretrain_ast.py runs it with its own)."""
  parsed = config_lib.parse_arg(arg, **layout.common_args(
      taxonomy="fine40", template="conversation", labeler="entailment", soft=False, source="peoples_speech",
      size=backbone["default_size"]))
  if parsed.source not in layout.PRETRAIN_SOURCES:
    raise ValueError(f"source={parsed.source!r}: expected one of {layout.PRETRAIN_SOURCES}")
  resnet = os.path.join(HERE, RESNET_FILES[parsed.source])
  c = config_lib.load_experiment(f"{resnet}:{config_lib.drop_args(arg, ('source', 'size', 'runlocal'))}")
  return with_backbone(c, backbone, parsed.size, parsed.platform, parsed.runlocal)


def with_backbone(c, backbone: dict, size: str, platform: str, runlocal: bool):
  """A finished ResNet-50 config with `backbone` at `size`: model, optimiser (peak learning rate and warmup
  as factors of the ResNet's), mesh and rules (the fine-tuning files use it too)."""
  c.model.name = model_name(backbone, size)
  c.optimizer.learning_rate *= backbone["lr_factor"]
  c.optimizer.weight_decay = backbone["weight_decay"]
  c.optimizer.grad_clip_norm = backbone["grad_clip_norm"]
  c.optimizer.warmup_steps = int(c.optimizer.warmup_steps * backbone["warmup_factor"])
  c.sharding.mesh, c.sharding.rules = backbone["mesh"][platform]
  if runlocal:
    # The runlocal shrink sets model.name = "tiny" (a ResNet): keep the family, at its tiny size, and take
    # the sharded code path on however many devices there are (fsdp=1 splits nothing but runs the rules).
    config_lib.runlocal(c)
    c.model.name = backbone["sizes"]["tiny"]
    c.sharding.mesh, c.sharding.rules = "data=-1,fsdp=1", "fsdp"
  return c


def model_name(backbone: dict, size: str) -> str:
  if size not in backbone["sizes"]:
    raise ValueError(f"size={size!r}: expected one of {sorted(backbone['sizes'])} for {backbone['family']}")
  return backbone["sizes"][size]
