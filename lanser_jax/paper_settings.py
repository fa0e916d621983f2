"""What the LanSER experiment files share: platform sizes, where data and runs live, and how one
weak-labelling variant (the ablations) names its feature folder and its pre-training run.

Not an experiment itself (no get_config): the experiment and sweep files in experiments/ import it.

Which numbers come from the LanSER paper (Gong et al., Interspeech 2023) and which are ours:
  paper: ResNet-50 on log-mel spectrograms; pre-training on weak labels that an entailment model infers
    from Whisper transcripts of People's Speech or Condensed Movies; the template
    "The emotion of the conversation is {}."; fine-tuning on IEMOCAP (4 classes) and CREMA-D (6 classes)
    with 10% .. 100% of the training labels.
  ours (the paper does not state them, or we could not check them): every batch size, learning rate,
    step count, crop length, the other templates of the prompt ablation, and the platform sizes below.
"""

from __future__ import annotations

import os

import ml_collections

from input_pipeline import protocols
from input_pipeline.adapters import emotion
from lanser_jax import config_lib

# Where the labelling stages write (`lanser_jax.labeling.run --workdir=...`) and where runs go.
DATA_ROOT = "/data/lanser"
RUNS_ROOT = "/data/lanser/runs"

PRETRAIN_SOURCES = ("peoples_speech", "condensed_movies")

# Prompt templates of the ablation, by name (config arguments cannot hold commas or spaces).
# "conversation" is the paper's; the others are ours, chosen to vary who feels the emotion.
TEMPLATES = {
    "conversation": "The emotion of the conversation is {}.",
    "speaker": "The speaker feels {}.",
    "i_feel": "I feel {}.",
    "bare": "{}.",
}
TAXONOMIES = ("fine40", "ekman7")  # fine-grained weak-label sets for pre-training
LABELERS = ("entailment", "sentence_encoder")

# Per platform: global batch (pre-training, fine-tuning), compute dtype, Grain workers per host.
# Ours: GPU = one 8 x 80 GB node, TPU = a v4-32 slice (16 chips, 4 hosts), CPU = a workstation.
# Global batches are multiples of the device count; the learning rate scales linearly with the batch
# (Goyal et al. 2017), from the reference LR at batch 256 (pre-training) and 64 (fine-tuning).
PLATFORMS = {
    "cpu": dict(pretrain_batch=32, finetune_batch=32, dtype="float32", num_workers=1, eval_batch=64),
    "gpu": dict(pretrain_batch=512, finetune_batch=64, dtype="bfloat16", num_workers=8, eval_batch=256),
    "tpu": dict(pretrain_batch=1024, finetune_batch=64, dtype="bfloat16", num_workers=16, eval_batch=512),
}


def weak_variant(taxonomy: str = "fine40", template: str = "conversation",
                 labeler: str = "entailment") -> str:
  """The folder name of one weak labelling: '<taxonomy>-<template>-<labeler>'.

  The labelling of corpus C with that labelling lives in `DATA_ROOT/C/<variant>/` (its manifest/, asr/,
  labels/ and features/), so one experiment argument selects the matching labelling output.
  """
  if taxonomy not in TAXONOMIES and not taxonomy.endswith(".txt"):  # a file: its name names the variant
    raise ValueError(f"taxonomy={taxonomy!r}: expected one of {TAXONOMIES} or a taxonomy file (.txt)")
  if template not in TEMPLATES:
    raise ValueError(f"template={template!r}: expected one of {sorted(TEMPLATES)}")
  if labeler not in LABELERS:
    raise ValueError(f"labeler={labeler!r}: expected one of {LABELERS}")
  return f"{taxonomy_name(taxonomy)}-{template}-{labeler}"


def taxonomy_name(taxonomy: str) -> str:
  """'fine40' -> 'fine40'; '/path/my_labels.txt' -> 'my_labels' (a taxonomy file's name, for folder names)."""
  return os.path.splitext(os.path.basename(taxonomy))[0] if taxonomy.endswith(".txt") else taxonomy


def pretrain_run_name(source: str, variant: str, soft: bool) -> str:
  """The workdir name of a pre-training run, under RUNS_ROOT: pretrain_<source>_<variant>_<hard|soft>."""
  if source not in PRETRAIN_SOURCES:
    raise ValueError(f"source={source!r}: expected one of {PRETRAIN_SOURCES}")
  return f"pretrain_{source}_{variant}_{'soft' if soft else 'hard'}"


def apply_platform(c: ml_collections.ConfigDict, platform: str, stage: str) -> ml_collections.ConfigDict:
  """Sets the global batch, dtype and input workers of `platform` ('cpu', 'gpu', 'tpu') for
  stage 'pretrain' or 'finetune', and scales the learning rate with the batch."""
  if platform not in PLATFORMS:
    raise ValueError(f"platform={platform!r}: expected one of {sorted(PLATFORMS)}")
  p = PLATFORMS[platform]
  reference_batch = 256 if stage == "pretrain" else 64
  c.batch_size = p[f"{stage}_batch"]
  c.eval_batch_size = p["eval_batch"]
  c.dtype = p["dtype"]
  c.data.num_workers = p["num_workers"]
  c.optimizer.learning_rate *= c.batch_size / reference_batch
  return c


def common_args(**defaults) -> dict:
  """Arguments every LanSER experiment file takes, plus its own."""
  return dict(platform="gpu", data_root=DATA_ROOT, runs_root=RUNS_ROOT, **defaults)



# ---------------------------------------------------------------------------------------------------
# Pre-training on weak labels.


def pretrain_config(source: str, arg: str | None, *, num_train_steps: int,
                    eval_split: str) -> ml_collections.ConfigDict:
  """Pre-training of a ResNet-50 (paper) on one weak labelling of `source`.

  Arguments: platform, runlocal, data_root, runs_root (unused here; the sweep names workdirs),
  taxonomy, template, labeler (which labelling: see weak_variant), soft (train on the score vectors).
  """
  arg = config_lib.parse_arg(arg, **common_args(taxonomy="fine40", template="conversation",
                                                labeler="entailment", soft=False))
  variant = weak_variant(arg.taxonomy, arg.template, arg.labeler)
  c = config_lib.base_config()
  c.data.dir = f"{arg.data_root}/{source}/{variant}/features"
  c.data.target = "scores" if arg.soft else "label"
  c.data.eval_split = eval_split  # agreement with held-out weak labels: picks the best checkpoint
  c.data.test_split = ""  # weak labels are no test: fine-tuning and zero-shot are the evaluations
  c.data.crop_frames = 300  # ours: 3 s random crops, as most transcribed segments are longer
  c.data.eval_hop_frames = 150
  c.model.name = "resnet50"  # paper
  c.num_train_steps = num_train_steps
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3  # ours, at batch 256; scaled with the batch by apply_platform
  c.optimizer.warmup_steps = 2000
  c.optimizer.weight_decay = 1e-4
  c.label_smoothing = 0.0 if arg.soft else 0.1  # ours: weak hard labels are noisy
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.checkpoint_every_steps = 2500
  c.keep_checkpoints = 2
  apply_platform(c, arg.platform, "pretrain")
  return config_lib.finalize(c, arg)


# ---------------------------------------------------------------------------------------------------
# Fine-tuning on human labels.

FINETUNE_DATASETS = ("iemocap", "crema_d")
# Target class set of each corpus, as named in lanser_jax/taxonomies (zero-shot and text-only mapping).
TARGET_SETS = {"iemocap": "iemocap4", "crema_d": "cremad6"}


# Evaluation protocols (input_pipeline/protocols.py; experiments/labeling/{iemocap,crema_d}.py write them).
IEMOCAP_PROTOCOLS = protocols.IEMOCAP_PROTOCOLS  # protocol -> number of folds
CREMA_D_SPLITS = emotion.CREMA_D_SPLITS
DEFAULT_PROTOCOL = {"iemocap": "loso", "crema_d": "actor_seeded"}


def finetune_data_dir(dataset: str, data_root: str, fold: int = 0, protocol: str = "") -> str:
  """Feature folders written by experiments/labeling/{iemocap,crema_d}.py for one protocol and fold.

  IEMOCAP: <data_root>/iemocap/features_foldK (loso) or features_<protocol>_foldK. CREMA-D (one split):
  crema_d/features (actor_seeded), crema_d/features_emobox, or crema_d_tfds/features (tfds reads TFDS's
  prepared copy, not the AudioWAV folder, so it is labelled in a workdir of its own).
  """
  protocol = protocol or DEFAULT_PROTOCOL.get(dataset, "")
  if dataset == "iemocap":
    if protocol not in IEMOCAP_PROTOCOLS:
      raise ValueError(f"IEMOCAP protocol={protocol!r}: expected one of {sorted(IEMOCAP_PROTOCOLS)}")
    if not 1 <= fold <= IEMOCAP_PROTOCOLS[protocol]:
      raise ValueError(f"IEMOCAP protocol {protocol}: fold must be 1..{IEMOCAP_PROTOCOLS[protocol]}, "
                       f"got {fold}")
    name = f"features_fold{fold}" if protocol == "loso" else f"features_{protocol}_fold{fold}"
    return f"{data_root}/iemocap/{name}"
  if dataset == "crema_d":
    if protocol not in CREMA_D_SPLITS:
      raise ValueError(f"CREMA-D split={protocol!r}: expected one of {CREMA_D_SPLITS}")
    return {"actor_seeded": f"{data_root}/crema_d/features", "emobox": f"{data_root}/crema_d/features_emobox",
            "tfds": f"{data_root}/crema_d_tfds/features"}[protocol]
  raise ValueError(f"dataset={dataset!r}: expected one of {FINETUNE_DATASETS}")


def finetune_config(dataset: str, arg: str | None, *, num_train_utts: int,
                    extra_args: dict | None = None) -> ml_collections.ConfigDict:
  """Fine-tuning (or training from scratch, or a linear probe) on a fraction of the human labels.

  Arguments: platform, runlocal, data_root, runs_root, fraction, seed, pretrained (none |
  peoples_speech | condensed_movies), taxonomy/template/labeler/soft (which pre-training run, see
  pretrain_run_name), probe (linear probe: frozen backbone, head only; needs pretrained).
  """
  arg = config_lib.parse_arg(arg, **common_args(
      fraction=1.0, seed=0, pretrained="none", taxonomy="fine40", template="conversation",
      labeler="entailment", soft=False, probe=False, **(extra_args or {})))
  c = config_lib.base_config()
  c.seed = arg.seed
  c.data.dir = finetune_data_dir(dataset, arg.data_root, arg.get("fold", 0),
                                 arg.get("protocol", "") or arg.get("split", ""))
  c.data.label_fraction = arg.fraction
  c.data.subset_seed = arg.seed  # the seed also draws the label subset: seeds average over both
  c.data.crop_frames = 300
  c.data.eval_hop_frames = 150
  c.model.name = "resnet50"  # paper
  c.model.dropout_rate = 0.2  # ours: the labelled sets are small
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-4  # ours, at batch 64
  c.optimizer.weight_decay = 1e-4
  # Ours: ~30 epochs of the labelled subset, at least 600 steps so 10% subsets are not under-trained.
  platform_batch = PLATFORMS.get(arg.platform, PLATFORMS["gpu"])["finetune_batch"]
  epochs = 30
  c.num_train_steps = max(600, int(epochs * num_train_utts * arg.fraction / platform_batch))
  c.optimizer.warmup_steps = c.num_train_steps // 20
  c.log_every_steps = 50
  c.eval_every_steps = max(100, c.num_train_steps // 15)
  c.checkpoint_every_steps = c.eval_every_steps
  c.keep_checkpoints = 1
  if arg.pretrained != "none":
    variant = weak_variant(arg.taxonomy, arg.template, arg.labeler)
    c.init_from = f"{arg.runs_root}/{pretrain_run_name(arg.pretrained, variant, arg.soft)}"
    c.init_from_step = "best"
  if arg.probe:
    if arg.pretrained == "none":
      raise ValueError("probe=True (linear probe) needs a pretrained backbone: set pretrained=...")
    c.freeze_backbone = True
    c.optimizer.learning_rate = 1e-2  # ours: a linear head on fixed features takes a larger step
    c.model.dropout_rate = 0.0
    c.specaugment.enabled = False
  apply_platform(c, arg.platform, "finetune")
  return config_lib.finalize(c, arg)


# ---------------------------------------------------------------------------------------------------
# Sweep cells (experiments/sweeps/*.py).


def sweep_args(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Arguments every sweep file takes: platform, runlocal, data_root, runs_root (= the sweep's --root),
  iemocap_protocol (loso | loso_spkval | lospk | emobox) and crema_d_split (actor_seeded | tfds | emobox)."""
  defaults = dict(dict(iemocap_protocol=DEFAULT_PROTOCOL["iemocap"],
                       crema_d_split=DEFAULT_PROTOCOL["crema_d"]), **defaults)
  return config_lib.parse_arg(arg, **common_args(**defaults))


def dataset_folds(iemocap_protocol: str = "loso", crema_d_split: str = "actor_seeded"):
  """(dataset, fold, experiment file, protocol): every IEMOCAP fold of the protocol, CREMA-D one split."""
  if iemocap_protocol not in IEMOCAP_PROTOCOLS:
    raise ValueError(f"iemocap_protocol={iemocap_protocol!r}: expected one of {sorted(IEMOCAP_PROTOCOLS)}")
  if crema_d_split not in CREMA_D_SPLITS:
    raise ValueError(f"crema_d_split={crema_d_split!r}: expected one of {CREMA_D_SPLITS}")
  return [("iemocap", k, "experiments/finetune_iemocap.py", iemocap_protocol)
          for k in range(1, IEMOCAP_PROTOCOLS[iemocap_protocol] + 1)] + [
      ("crema_d", 0, "experiments/finetune_crema_d.py", crema_d_split)]


def protocol_part(dataset: str, protocol: str) -> str:
  """The cell-name component of a protocol: empty for the defaults, so default cell names stay as
  they were (and finished runs are still found)."""
  return "" if protocol == DEFAULT_PROTOCOL[dataset] else f"{protocol}/"


def finetune_cell(dataset, fold, exp_file, pretrained, fraction, seed, arg, extra="", tag="", protocol=""):
  """One fine-tuning cell; `extra` adds experiment arguments, `tag` a name component (ablations)."""
  protocol = protocol or DEFAULT_PROTOCOL[dataset]
  fold_part = f"fold={fold},protocol={protocol}," if dataset == "iemocap" else f"split={protocol},"
  spec = (f"{exp_file}:{fold_part}fraction={fraction},seed={seed},pretrained={pretrained},"
          f"platform={arg.platform},data_root={arg.data_root},runs_root={arg.runs_root}"
          + (f",{extra}" if extra else "") + (",runlocal" if arg.runlocal else ""))
  name = (f"{dataset}/{protocol_part(dataset, protocol)}fold{fold}/{tag + '/' if tag else ''}{pretrained}/"
          f"frac{fraction}/seed{seed}")
  return {"name": name, "config": spec,
          "axes": {"dataset": dataset, "protocol": protocol, "fold": fold, "pretrained": pretrained,
                   "fraction": fraction, "seed": seed}}
