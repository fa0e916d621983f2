"""The end-to-end demo's labelling (lanser_jax/demo/end_to_end.py runs these; they also run alone).

  # unlabelled pre-training corpus -> Whisper tiny.en -> weak labels (ekman7) -> log-mel shards
  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/demo.py:corpus=pretrain,list=DIR/manifest.jsonl \
      --stage=all --workdir=WORK
  # labelled CREMA-D-style corpus -> log-mel shards with its human labels and train/validation/test split
  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/demo.py:corpus=labelled,list=DIR/manifest.jsonl \
      --stage=all --workdir=WORK

Arguments: corpus (pretrain | labelled), list (the corpus manifest), labeler (entailment | sentence_encoder),
nli_model (the entailment checkpoint; default roberta-large-mnli), heldout (pre-training voices kept for
validation, comma-free: '+'-separated speaker ids).
The same stages as the full-scale configs (peoples_speech.py, crema_d.py); only the models and sizes differ.
"""

from lanser_jax import config_lib
from lanser_jax.demo import corpus as demo_corpus
from lanser_jax.experiments import common
from lanser_jax.stages import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, corpus="pretrain", list="", labeler="entailment",
                             nli_model="roberta-large-mnli", heldout="")
  c = defaults.default_config()
  c.offline = True
  c.num_pieces = 2  # one piece per core
  c.manifest.adapter = "list"
  c.manifest.root = arg.list  # the list adapter reads root as the list file
  c.audio.max_seconds = 15.0
  c.features.num_mel_bins = 64
  if arg.corpus == "pretrain":
    c.stages = ("manifest", "asr", "label", "features")
    c.asr.model = common.tiny_whisper()
    c.asr.device = "cpu"
    c.asr.compute_type = "int8"
    c.asr.beam_size = 1
    c.asr.batch_size = 8
    c.asr.language = "en"
    c.labeler.kind = arg.labeler
    c.labeler.model = arg.nli_model if arg.labeler == "entailment" else None
    c.labeler.taxonomy = "ekman7"  # the demo sentences carry the Ekman emotions
    c.labeler.batch_size = 32
    c.features.label_source = "weak"
    c.features.split_map = {f"train/{s}": "validation" for s in filter(None, arg.heldout.split("+"))}
  elif arg.corpus == "labelled":
    c.stages = ("manifest", "features")
    c.features.label_source = "human"
    c.features.label_names = demo_corpus.CREMAD_EMOTIONS
  else:
    raise ValueError(f"corpus={arg.corpus!r}: expected 'pretrain' or 'labelled'")
  return c
