"""Where the LanSER experiments' data and runs live and how they are named, the facts that the experiment
and sweep files in lanser_jax/experiments/ share: the data root (LANSER_DATA_ROOT), the choices of a weak labelling and
its folder name, pre-training run names, the fine-tuning feature folder of each protocol and fold, and the
names of sweep cells (one rule, so that sweeps find each other's finished runs).

No hyperparameter lives here: every experiment file sets its own values inline (big_vision's config style).

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

import ml_collections

from lanser_jax.corpora import protocols
from lanser_jax.corpora import emotion
from lanser_jax import config_lib

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


def pretrain_run_name(source: str, variant: str, soft: bool) -> str:
  """The workdir name of a pre-training run, under runs_root: pretrain_<source>_<variant>_<hard|soft>."""
  if source not in PRETRAIN_SOURCES:
    raise ValueError(f"source={source!r}: expected one of {PRETRAIN_SOURCES}")
  return f"pretrain_{source}_{variant}_{'soft' if soft else 'hard'}"


def common_args(**defaults) -> dict:
  """Arguments every LanSER experiment and sweep file takes (platform, data_root, runs_root), plus its own."""
  return dict(platform="gpu", data_root=data_root(), runs_root=runs_root(), **defaults)


# ---------------------------------------------------------------------------------------------------
# Fine-tuning data.

FINETUNE_DATASETS = ("iemocap", "crema_d")
# Target class set of each corpus, as named in lanser_jax/taxonomies (zero-shot and text-only mapping).
TARGET_SETS = {"iemocap": "iemocap4", "crema_d": "cremad6"}


# Evaluation protocols (lanser_jax/corpora/protocols.py; lanser_jax/experiments/labeling/{iemocap,crema_d}.py write them).
IEMOCAP_PROTOCOLS = protocols.IEMOCAP_PROTOCOLS  # protocol -> number of folds
CREMA_D_SPLITS = emotion.CREMA_D_SPLITS
DEFAULT_PROTOCOL = {"iemocap": "loso", "crema_d": "actor_seeded"}


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
    name = f"features_fold{fold}" if protocol == "loso" else f"features_{protocol}_fold{fold}"
    return f"{data_root}/iemocap/{name}"
  if dataset == "crema_d":
    if protocol not in CREMA_D_SPLITS:
      raise ValueError(f"CREMA-D split={protocol!r}: expected one of {CREMA_D_SPLITS}")
    return {"actor_seeded": f"{data_root}/crema_d/features", "emobox": f"{data_root}/crema_d/features_emobox",
            "tfds": f"{data_root}/crema_d_tfds/features"}[protocol]
  raise ValueError(f"dataset={dataset!r}: expected one of {FINETUNE_DATASETS}")


# ---------------------------------------------------------------------------------------------------
# Sweep cells (lanser_jax/experiments/sweeps/*.py).


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
  return [("iemocap", k, "lanser_jax/experiments/finetune_iemocap.py", iemocap_protocol)
          for k in range(1, IEMOCAP_PROTOCOLS[iemocap_protocol] + 1)] + [
      ("crema_d", 0, "lanser_jax/experiments/finetune_crema_d.py", crema_d_split)]


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
