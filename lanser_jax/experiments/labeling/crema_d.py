"""CREMA-D for fine-tuning: human labels (6 classes), on the split the `split` argument names.

  # actor_seeded (the default): the project's speaker-independent 70/10/20 over actors (seed 0):
  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/crema_d.py --stage=all \
      --workdir=/data/lanser/crema_d --config.manifest.root=/data/CREMA-D
  # emobox: EmoBox's fold 1 lists (emobox_dir = the data/ folder of an EmoBox checkout); same workdir
  # and manifest as actor_seeded, features in <workdir>/features_emobox:
  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/crema_d.py:split=emobox,emobox_dir=... \
      --stage=all --workdir=/data/lanser/crema_d --config.manifest.root=/data/CREMA-D
  # tfds: TFDS crema_d's own train/validation/test (prepare it first: tfds build crema_d --data_dir=D);
  # its clips are exported to WAV, so it gets a workdir of its own:
  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/crema_d.py:split=tfds --stage=all \
      --workdir=/data/lanser/crema_d_tfds --config.manifest.tfds_data_dir=D
  # weak=True also runs ASR + weak labelling, e.g. to score weak labels against the human ones:
  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/crema_d.py:weak=True ...

The split never depends on what is installed: split=tfds without tensorflow-datasets, or without the
prepared data, stops with an error saying so. EmoBox has no validation list: validation is a seeded,
label-stratified 20% of its train list (lanser_jax/corpora/protocols.py). Arguments: split, seed (actor
split and validation draw; 0), emobox_dir, weak. 7,442 clips, ~5 h: minutes on CPU for features.
"""

import ml_collections

from lanser_jax.corpora import emotion
from lanser_jax import config_lib
from lanser_jax.stages import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, weak=False, split="actor_seeded", seed=0, emobox_dir="")
  if arg.split not in emotion.CREMA_D_SPLITS:
    raise ValueError(f"split={arg.split!r}: expected one of {emotion.CREMA_D_SPLITS}")
  c = defaults.default_config()
  c.num_pieces = 4
  c.manifest = ml_collections.ConfigDict({
      "adapter": "crema_d", "root": "/data/CREMA-D", "seed": arg.seed,
      # emobox reads the same manifest rows as actor_seeded; the features stage applies its lists
      "split": "actor_seeded" if arg.split == "emobox" else arg.split,
      # split=tfds: where `tfds build` prepared crema_d, its download folder ("" = <tfds_data_dir>/downloads,
      # whose *.INFO files give each example its clip name) and where the clips are exported as WAV
      "tfds_data_dir": "", "download_dir": "", "export_dir": "/tmp/crema_d_tfds_wav"})
  c.stages = ("manifest", "asr", "label", "features") if arg.weak else ("manifest", "features")
  c.asr.language = "en"
  c.labeler.taxonomy = "cremad6"
  c.features.label_source = "human"
  c.features.label_names = emotion.CREMA_D_CLASSES
  c.features.stats_split = "train"
  if arg.split == "emobox":
    c.features.dir_name = "features_emobox"
    c.features.protocol = ml_collections.ConfigDict({
        "corpus": "crema_d", "name": "emobox", "fold": 1, "seed": arg.seed, "valid_ratio": 0.2,
        "emobox_dir": arg.emobox_dir})
  return c
