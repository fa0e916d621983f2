"""IEMOCAP for fine-tuning: 4 classes (neutral, happy+excited, sad, angry), in the protocols peers report.

  # all five sessions as splits session1..session5 in <workdir>/features (the manifest every fold reads):
  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/iemocap.py --stage=all \
      --workdir=/data/lanser/iemocap --config.manifest.root=/data/IEMOCAP_full_release
  # one fold of one protocol as train/validation/test in <workdir>/features_<protocol>_foldK
  # (protocol=loso, the default, writes features_foldK, the folder lanser_jax/experiments/finetune_iemocap.py reads):
  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/iemocap.py:fold=1 \
      --stage=features --workdir=/data/lanser/iemocap --config.manifest.root=...
  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/iemocap.py:protocol=lospk,fold=7 ...
  python -m lanser_jax.stages.main \
      --config=lanser_jax/experiments/labeling/iemocap.py:protocol=emobox,fold=1,emobox_dir=/data/EmoBox/data ...

Protocols (lanser_jax/corpora/protocols.py has the exact rules):
  loso         (default) folds 1-5, as s3prl SUPERB ER: test = the whole held-out session; validation =
               a seeded, label-stratified 20% (valid_ratio) of the training sessions' utterances.
  loso_spkval  folds 1-5: test = the held-out session; validation = one whole training speaker.
  lospk        folds 1-10, leave-one-speaker-out (emotion2vec): test = one speaker, validation = the
               other speaker of that session.
  emobox       folds 1-5: EmoBox's fold lists (emobox_dir = the data/ folder of an EmoBox checkout);
               validation = a stratified 20% of EmoBox's train list.
Arguments: protocol, fold, seed (the validation draw; 0), valid_ratio (0.2), emobox_dir, weak (also
ASR + weak labels). Label fractions (lanser_jax/experiments/finetune_iemocap.py) subsample the train split only.
Other IEMOCAP labels (frustration, surprise, ...) are rejected and counted in manifest/summary.json.
~12 h of audio (5,531 utterances kept): minutes on CPU for features.
"""

import ml_collections

from lanser_jax.corpora import protocols
from lanser_jax.corpora import emotion
from lanser_jax import config_lib
from lanser_jax.experiments import common
from lanser_jax.stages import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, fold=0, weak=False, protocol="loso", seed=0, valid_ratio=0.2,
                             emobox_dir="")
  if arg.protocol not in protocols.IEMOCAP_PROTOCOLS:
    raise ValueError(f"protocol={arg.protocol!r}: expected one of {sorted(protocols.IEMOCAP_PROTOCOLS)}")
  c = defaults.default_config()
  c.num_pieces = 4
  c.manifest = ml_collections.ConfigDict(
      {"adapter": "iemocap", "root": "/data/IEMOCAP_full_release"})
  c.stages = ("manifest", "asr", "label", "features") if arg.weak else ("manifest", "features")
  c.asr.language = "en"
  c.labeler.taxonomy = "iemocap4"
  c.features.label_source = "human"
  c.features.label_names = emotion.IEMOCAP_CLASSES
  c.features.folds = emotion.iemocap_folds()
  if arg.fold:
    num_folds = protocols.IEMOCAP_PROTOCOLS[arg.protocol]
    if not 1 <= arg.fold <= num_folds:
      raise ValueError(f"protocol={arg.protocol} has folds 1..{num_folds}, got fold={arg.fold}")
    c.features.dir_name = common.iemocap_features_name(arg.protocol, arg.fold)
    c.features.protocol = ml_collections.ConfigDict({
        "corpus": "iemocap", "name": arg.protocol, "fold": arg.fold, "seed": arg.seed,
        "valid_ratio": arg.valid_ratio, "emobox_dir": arg.emobox_dir})
    c.features.folds = {}
    c.features.stats_split = "train"
  else:
    c.features.stats_split = "session1"  # the per-fold folders normalise on their own train split
  return c
