"""IEMOCAP for fine-tuning: 4 classes (neutral, happy+excited, sad, angry), leave-one-session-out.

  # all five sessions as splits session1..session5 in <workdir>/features:
  python -m lanser_jax.labeling.run --config=experiments/labeling/iemocap.py --stage=all \
      --workdir=/data/lanser/iemocap --config.manifest.root=/data/IEMOCAP_full_release
  # fold K as train/validation/test in <workdir>/features_foldK (K = 1..5); the held-out
  # session's female speaker is the validation split and its male speaker the test split:
  python -m lanser_jax.labeling.run --config=experiments/labeling/iemocap.py:fold=1 \
      --stage=features --workdir=/data/lanser/iemocap --config.manifest.root=...

Other IEMOCAP labels (frustration, surprise, ...) are rejected and counted in
manifest/summary.json. ~12 h of audio (5,531 utterances kept): minutes on CPU for features.
"""

import ml_collections

from input_pipeline.adapters import emotion
from lanser_jax import config_lib
from lanser_jax.labeling import stages


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, fold=0, weak=False)
  c = stages.default_config()
  c.output_shards = 4
  c.manifest = ml_collections.ConfigDict(
      {"adapter": "iemocap", "root": "/data/IEMOCAP_full_release"})
  c.stages = ("manifest", "asr", "label", "features") if arg.weak else ("manifest", "features")
  c.asr.language = "en"
  c.labeler.taxonomy = "iemocap4"
  c.features.label_source = "human"
  c.features.label_names = emotion.IEMOCAP_CLASSES
  c.features.folds = emotion.iemocap_folds()
  if arg.fold:
    k = arg.fold
    c.features.dir_name = f"features_fold{k}"
    c.features.split_map = {f"session{j}": "train" for j in range(1, 6) if j != k}
    c.features.split_map[f"session{k}/Ses{k:02d}F"] = "validation"
    c.features.split_map[f"session{k}/Ses{k:02d}M"] = "test"
    c.features.folds = {}
    c.features.stats_split = "train"
  else:
    c.features.stats_split = "session1"  # the per-fold folders normalise on their own train split
  return c
