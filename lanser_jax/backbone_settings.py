"""The LanSER settings (lanser_jax/paper_settings.py) with another backbone: Conformer or spectrogram
transformer, their optimiser settings and how their state lies on each platform's devices.

Not an experiment itself: experiments/{pretrain,finetune}_{conformer,ast}.py and
experiments/sweeps/backbones.py import it. Everything here is ours (the LanSER paper trains only ResNet-50);
it leaves the data, steps, crops and label fractions of paper_settings alone, so a backbone comparison
changes the backbone and its optimiser only.
"""

from __future__ import annotations

import ml_collections

from lanser_jax import config_lib, paper_settings

# Sizes an experiment argument may pick, per family; "tiny" is what runlocal uses.
SIZES = {"conformer": {"s": "conformer_s", "m": "conformer_m", "tiny": "conformer_tiny"},
         "ast": {"b16": "ast", "tiny": "ast_tiny"}}
DEFAULT_SIZE = {"conformer": "s", "ast": "b16"}

# Ours: transformer recipes take a smaller peak learning rate (at the reference batch; apply_platform has
# already scaled the ResNet's with the batch, so these are ratios to it), decoupled weight decay 0.05 as
# ViTs use (Dosovitskiy et al. 2021 used 0.1 with Adam), global-norm clipping at 1, and a longer warmup.
OPTIMISER = {"conformer": dict(lr_factor=0.5, weight_decay=0.05, grad_clip_norm=1.0, warmup_factor=2.0),
             "ast": dict(lr_factor=0.25, weight_decay=0.05, grad_clip_norm=1.0, warmup_factor=2.0)}

# Mesh and rules per platform (lanser_jax/sharding.py). ViT-B's AdamW state (85M parameters x 3 x 4 bytes,
# ~1 GB) fits replicated on one accelerator; it is split over fsdp anyway on GPU/TPU, so that the larger
# sizes a user adds fit too and the sharded path is the one that is exercised. CPU stays replicated.
MESH = {
    "conformer": {"cpu": ("data=-1", "replicated"), "gpu": ("data=-1", "replicated"),
                  "tpu": ("data=-1", "replicated")},
    "ast": {"cpu": ("data=-1", "replicated"), "gpu": ("data=-1,fsdp=8", "fsdp"),
            "tpu": ("data=-1,fsdp=4", "fsdp")},
}


def backbone_args(family: str) -> dict:
  return {"size": DEFAULT_SIZE[family]}


def model_name(family: str, size: str) -> str:
  if size not in SIZES[family]:
    raise ValueError(f"size={size!r}: expected one of {sorted(SIZES[family])} for {family}")
  return SIZES[family][size]


def run_suffix(family: str, size: str) -> str:
  """What a backbone adds to a pre-training workdir name, so that runs of several backbones sit side by
  side and the fine-tuning files find theirs."""
  return f"_{model_name(family, size)}"


def apply_backbone(c: ml_collections.ConfigDict, family: str, size: str, platform: str,
                   runlocal: bool) -> ml_collections.ConfigDict:
  """Sets model, optimiser and sharding of `family` on a config paper_settings built (before finalize)."""
  c.model.name = model_name(family, size)
  o = OPTIMISER[family]
  c.optimizer.learning_rate *= o["lr_factor"]
  c.optimizer.weight_decay = o["weight_decay"]
  c.optimizer.grad_clip_norm = o["grad_clip_norm"]
  c.optimizer.warmup_steps = int(c.optimizer.warmup_steps * o["warmup_factor"])
  c.sharding.mesh, c.sharding.rules = MESH[family][platform]
  if runlocal:
    # The runlocal shrink sets model.name = "tiny" (a ResNet): keep the family, at its tiny size, and take
    # the sharded code path on however many devices there are (fsdp=1 splits nothing but runs the rules).
    config_lib.runlocal(c)
    c.model.name = SIZES[family]["tiny"]
    c.sharding.mesh, c.sharding.rules = "data=-1,fsdp=1", "fsdp"
  return c


def pretrain_config(family: str, arg: str | None) -> ml_collections.ConfigDict:
  """paper_settings.pretrain_config of `source` (argument; peoples_speech by default) with this backbone.
  Arguments: those of experiments/pretrain_peoples_speech.py, plus source and size."""
  parsed = config_lib.parse_arg(arg, **paper_settings.common_args(
      taxonomy="fine40", template="conversation", labeler="entailment", soft=False,
      source="peoples_speech", **backbone_args(family)))
  if parsed.source not in paper_settings.PRETRAIN_SOURCES:
    raise ValueError(f"source={parsed.source!r}: expected one of {paper_settings.PRETRAIN_SOURCES}")
  steps, eval_split = ((100_000, "validation") if parsed.source == "peoples_speech" else (30_000, ""))
  c = paper_settings.pretrain_config(parsed.source, _without(arg, ("source", "size", "runlocal")),
                                     num_train_steps=steps, eval_split=eval_split)
  return apply_backbone(c, family, parsed.size, parsed.platform, parsed.runlocal)


def finetune_config(family: str, arg: str | None) -> ml_collections.ConfigDict:
  """paper_settings.finetune_config of `dataset` (argument; iemocap by default, which needs fold) with
  this backbone; pretrained=... restores the same backbone's pre-training run."""
  parsed = config_lib.parse_arg(arg, **paper_settings.common_args(
      fraction=1.0, seed=0, pretrained="none", taxonomy="fine40", template="conversation",
      labeler="entailment", soft=False, probe=False, fold=0, dataset="iemocap", **backbone_args(family)))
  if parsed.dataset not in paper_settings.FINETUNE_DATASETS:
    raise ValueError(f"dataset={parsed.dataset!r}: expected one of {paper_settings.FINETUNE_DATASETS}")
  utts = {"iemocap": 4400, "crema_d": 5200}[parsed.dataset]  # as experiments/finetune_{iemocap,crema_d}.py
  drop = ("dataset", "size", "runlocal") + (("fold",) if parsed.dataset == "crema_d" else ())
  if parsed.dataset == "crema_d" and parsed.fold:
    raise ValueError("dataset=crema_d has no folds: leave fold unset")
  extra = {"fold": 0} if parsed.dataset == "iemocap" else None
  c = paper_settings.finetune_config(parsed.dataset, _without(arg, drop), num_train_utts=utts,
                                     extra_args=extra)
  if c.init_from:
    c.init_from += run_suffix(family, parsed.size)
  return apply_backbone(c, family, parsed.size, parsed.platform, parsed.runlocal)


def _without(arg: str | None, keys: tuple[str, ...]) -> str:
  """The argument string less `keys` (those paper_settings does not take)."""
  return ",".join(t for t in (arg or "").split(",") if t and t.partition("=")[0] not in keys)
