"""CREMA-D for fine-tuning: human labels (6 classes), speaker-independent 70/10/20 split (seed 0).

  python -m lanser_jax.labeling.run --config=experiments/labeling/crema_d.py --stage=all \
      --workdir=/data/lanser/crema_d --config.manifest.root=/data/CREMA-D
  # weak=True also runs ASR + weak labelling, e.g. to score weak labels against the human ones:
  python -m lanser_jax.labeling.run --config=experiments/labeling/crema_d.py:weak=True ...

tensorflow-datasets `crema_d` is used when installed and prepared (manifest.tfds_data_dir; its WAVs
are exported to manifest.export_dir); otherwise the local AudioWAV/ folder. 7,442 clips, ~5 h:
minutes on CPU for features.
"""

import ml_collections

from input_pipeline.adapters import emotion
from lanser_jax import config_lib
from lanser_jax.labeling import stages


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, weak=False)
  c = stages.default_config()
  c.output_shards = 4
  c.manifest = ml_collections.ConfigDict({
      "adapter": "crema_d", "root": "/data/CREMA-D", "seed": 0, "use_tfds": True,
      "tfds_data_dir": "", "export_dir": "/tmp/crema_d_tfds_wav"})
  c.stages = ("manifest", "asr", "label", "features") if arg.weak else ("manifest", "features")
  c.asr.language = "en"
  c.labeler.taxonomy = "cremad6"
  c.features.label_source = "human"
  c.features.label_names = emotion.CREMA_D_CLASSES
  c.features.stats_split = "train"
  return c
