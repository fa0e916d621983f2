"""Any EmoBox corpus, on EmoBox's own folds: human labels as EmoBox names them, one feature folder per fold.

  # every fold of RAVDESS (EmoBox has 6): <workdir>/features_emobox_fold1..6
  lanser-label --config=lanser_jax/experiments/labeling/emobox.py:dataset=ravdess,emobox_dir=/src/EmoBox \
      --workdir=/data/lanser/ravdess
  # one fold, audio downloaded elsewhere than the checkout's downloads/:
  lanser-label --config=lanser_jax/experiments/labeling/emobox.py:dataset=emodb,emobox_dir=/src/EmoBox,audio_root=/data/emobox,fold=2 ...

emobox_dir: an EmoBox checkout (git clone https://github.com/emo-box/EmoBox) or its data/ folder; the fold lists
are read from there (data/<dataset>/fold_K/<dataset>_{train,valid,test}_fold_K.jsonl), never copied.
audio_root: the folder holding downloads/ as EmoBox's README lays it out (default: the checkout's root), so that
audio_root/<wav of the list> is each file. Labels are EmoBox's names (its label_map.json applied to `emo`),
sorted (declare or map them with labels=a|b, label_map=FROM:TO|...). Validation: EmoBox's valid list where it has one (MSP-Podcast, MELD, M3ED),
else a seeded, label-stratified valid_ratio (0.2) of the fold's train list. Speakers are read from the keys of
the corpora that name them (lanser_jax/corpora/emobox.py). Arguments: dataset (an EmoBox data/ folder name;
ravdess), emobox_dir, audio_root, fold
(0: every fold), seed, valid_ratio, labels, label_map, weak.
"""

import ml_collections

from lanser_jax import config_lib
from lanser_jax.corpora import labels as labels_lib
from lanser_jax.stages import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, dataset="ravdess", emobox_dir="", audio_root="", fold=0, seed=0, valid_ratio=0.2,
                             labels="", label_map="", weak=False)
  c = defaults.default_config()
  c.num_pieces = 4
  c.manifest = ml_collections.ConfigDict({
      "adapter": "emobox", "emobox_dir": arg.emobox_dir, "dataset": arg.dataset, "audio_root": arg.audio_root,
      "label_map": labels_lib.parse_map(arg.label_map)})
  c.stages = ("manifest", "asr", "label", "features") if arg.weak else ("manifest", "features")
  c.features.label_source = "human"
  c.features.label_names = tuple(labels_lib.parse_list(arg.labels))
  c.features.stats_split = "train"
  c.features.dir_name = f"features_emobox_fold{arg.fold}" if arg.fold else "features_emobox"
  c.features.protocol = ml_collections.ConfigDict({
      "corpus": "emobox", "name": "emobox", "dataset": arg.dataset, "fold": arg.fold, "seed": arg.seed,
      "valid_ratio": arg.valid_ratio, "emobox_dir": arg.emobox_dir})
  return c
