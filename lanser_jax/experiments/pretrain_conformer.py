"""LanSER pre-training with a Conformer (Gulati et al. 2020; size=s|m, default s) instead of ResNet-50.

  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_conformer.py:platform=gpu \
      --workdir=/data/lanser/runs/pretrain_peoples_speech_fine40-conversation-entailment_hard_conformer_s
  ...pretrain_conformer.py:platform=tpu,source=condensed_movies,size=m
  python -m lanser_jax.main --config=lanser_jax/experiments/pretrain_conformer.py:runlocal,platform=cpu \
      --workdir=/tmp/pt_conformer_local --config.data.dir=/tmp/lanser_synth

Arguments: those of lanser_jax/experiments/pretrain_peoples_speech.py (platform, runlocal, data_root, taxonomy,
template, labeler, soft) plus source (peoples_speech|condensed_movies) and size (s|m). Data, steps, crops
and platform sizes are the ResNet-50 run's of the source (pretrain_<source>.py), so a backbone comparison
changes the backbone and its optimiser only; the optimiser recipe is ours, untuned (common.BACKBONE_RECIPES
states it as factors of the ResNet-50's). runlocal: the tiny size, sharded code path.
Expected cost: not measured on an accelerator. A Conformer-S train step costs 0.6x ResNet-50's arithmetic
per example (5.30 vs 8.85 GFLOP, XLA's count; benchmarks/README.md "Other backbones").
"""

from lanser_jax import config_lib
from lanser_jax.experiments import common

FAMILY = "conformer"


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **common.common_args(**common.WEAK_LABEL_ARGS, source="peoples_speech",
                                                        size="s"))
  if arg.source not in common.PRETRAIN_SOURCES:
    raise ValueError(f"source={arg.source!r}: expected one of {common.PRETRAIN_SOURCES}")
  variant = common.weak_variant(arg.taxonomy, arg.template, arg.labeler)  # the labelling's folder name
  c = config_lib.base_config()
  c.data.dir = common.pretrain_data_dir(arg.source, arg.data_root, variant)
  c.data.target = "scores" if arg.soft else "label"
  # As the ResNet-50 run of the source: People's Speech's validation split picks the best checkpoint;
  # Condensed Movies has no held-out split (the last checkpoint is used) and is ~25x smaller.
  c.data.eval_split = {"peoples_speech": "validation", "condensed_movies": ""}[arg.source]
  c.data.test_split = ""  # weak labels are no test: fine-tuning and zero-shot are the evaluations
  c.data.crop_frames = 300  # ours: 3 s random crops
  c.data.eval_hop_frames = 150
  c.num_train_steps = {"peoples_speech": 100_000, "condensed_movies": 30_000}[arg.source]
  c.optimizer.name = "adamw"
  c.optimizer.warmup_steps = 4000  # ours: twice the ResNet-50's
  c.optimizer.weight_decay = 0.05  # ours: decoupled weight decay as ViTs use
  c.optimizer.grad_clip_norm = 1.0  # ours: global-norm clipping
  c.label_smoothing = 0.0 if arg.soft else 0.1  # ours: weak hard labels are noisy
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.checkpoint_every_steps = 2500
  c.keep_checkpoints = 2
  common.set_platform(c, common.PRETRAIN_PLATFORMS, arg.platform)  # batch 32 / 512 / 1024, dtype, workers
  # Ours: half the ResNet-50's peak (1e-3 at batch 256, scaled linearly with the global batch).
  c.optimizer.learning_rate = 1e-3 * (c.batch_size / 256) * 0.5
  c.model.name = common.backbone_model(FAMILY, arg.size)  # conformer_s | conformer_m (lanser_jax/models/)
  # A Conformer's state is small: replicated everywhere (lanser_jax/engine/sharding.py).
  c.sharding.mesh, c.sharding.rules = "data=-1", "replicated"
  if arg.runlocal:  # the tiny size, sharded code path
    common.runlocal_backbone(c, FAMILY)
  return c
