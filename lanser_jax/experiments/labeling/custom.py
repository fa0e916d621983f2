"""Your own labelled corpus: a CSV or JSON-lines list, or a folder per label, to speaker-independent feature folds.

  # a list with columns path,label,speaker (CSV header, or one JSON object per line); every fold of a
  # 5-fold leave-speakers-out cross-validation, one feature folder each (features_speaker_kfold_fold1..5):
  lanser-label --config=lanser_jax/experiments/labeling/custom.py:path=/data/my_corpus/list.csv \
      --workdir=/data/lanser/my_corpus
  # declared classes (in the model's output order), one corpus label mapped, one dropped:
  lanser-label --config=lanser_jax/experiments/labeling/custom.py:path=list.csv,labels=angry|happy|neutral|sad,label_map=ang:angry|xxx: ...
  # a folder per label (root/<label>/*.wav; no speakers, so a label-stratified utterance holdout):
  lanser-label --config=lanser_jax/experiments/labeling/custom.py:path=/data/tree,protocol=utterance_holdout ...

List columns (lanser_jax/corpora/generic.py): audio (or path; relative to the list's folder), label, and
optional speaker, split, text, utt_id, offset, duration. Other names are mapped with columns=, e.g.
columns=audio:file|label:emotion. A list without an audio column stops with one line naming its columns.

Labels: declared with labels=a|b|c, or (the default) the sorted labels of the data. A label outside the
declared set stops the manifest stage with every unexpected label and its count; label_map=FROM:TO|... maps
labels first (FROM: with nothing after the colon drops that label's rows, each listed in manifest/errors.jsonl).

Protocols (lanser_jax/corpora/speakers.py): speaker_kfold (default; folds=5), leave_one_speaker_out,
speaker_holdout (test_ratio=0.2 of the speakers), utterance_holdout (no speakers needed; not
speaker-independent), split (the list's own split column, mapped as is: train/validation/test). Validation
is valid_ratio (0.2) of each fold's training speakers. fold=0 (default) writes every fold in one run, fold=K
only fold K. Every fold's folder <workdir>/features_<protocol>_fold<K> has train, validation and test splits
and its protocol in dataset.json. Arguments: path, protocol, folds, fold, seed, valid_ratio, test_ratio,
labels, label_map, columns, weak (also ASR + weak labels, e.g. to score them against the human ones).
"""

import ml_collections

from lanser_jax import config_lib
from lanser_jax.corpora import labels as labels_lib
from lanser_jax.corpora import speakers
from lanser_jax.stages import defaults

PROTOCOLS = speakers.PROTOCOLS + ("split",)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, path="", protocol="speaker_kfold", folds=5, fold=0, seed=0, valid_ratio=0.2,
                             test_ratio=0.2, labels="", label_map="", columns="", weak=False)
  if arg.protocol not in PROTOCOLS:
    raise ValueError(f"protocol={arg.protocol!r}: expected one of {list(PROTOCOLS)}")
  c = defaults.default_config()
  c.num_pieces = 4
  is_list = arg.path.lower().endswith((".csv", ".jsonl", ".json"))
  if is_list:
    c.manifest = ml_collections.ConfigDict({"adapter": "list", "root": arg.path,
                                            "columns": labels_lib.parse_map(arg.columns)})
  else:
    c.manifest = ml_collections.ConfigDict({"adapter": "folder", "root": arg.path, "label_from_parent": True})
  c.manifest.label_map = labels_lib.parse_map(arg.label_map)
  c.stages = ("manifest", "asr", "label", "features") if arg.weak else ("manifest", "features")
  c.features.label_source = "human"
  c.features.label_names = tuple(labels_lib.parse_list(arg.labels))
  c.features.stats_split = "train"
  if arg.protocol == "split":
    c.features.dir_name = "features"
    return c
  c.features.dir_name = f"features_{arg.protocol}"
  c.features.protocol = ml_collections.ConfigDict({
      "corpus": "any", "name": arg.protocol, "fold": arg.fold, "num_folds": arg.folds, "seed": arg.seed,
      "valid_ratio": arg.valid_ratio, "test_ratio": arg.test_ratio})
  if arg.fold:
    c.features.dir_name = f"features_{arg.protocol}_fold{arg.fold}"
  return c
