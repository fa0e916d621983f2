"""Weak labels in several languages: multilingual Whisper detects each utterance's language, and an XNLI
model scores the transcript against that language's template.

  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/multilingual.py --stage=all \
      --workdir=/data/lanser/multi --config.manifest.root=/data/my_multilingual_audio
  # fewer languages, or another taxonomy:
  ...multilingual.py:languages=es+de,taxonomy=fine40

Whisper large-v3 (multilingual; asr.language="" detects per utterance) and joeddav/xlm-roberta-large-xnli
(XLM-RoBERTa-large fine-tuned on XNLI; its config names an 'entailment' class). Each template is a
translation of the paper's English prompt; labeler.template_languages gives each template's language and
label.languages keeps only those languages (others are rejected with their detected language). The label
words are the taxonomy's English words in every template: the label set stays one across languages, and a
cross-lingual NLI model reads a pair of two languages (no measured figure for this here).
Not run here: both checkpoints need the hub (no network in this project's sandbox); the code path is
tested on a tiny random XLM-RoBERTa loaded through the same from_pretrained (tests/stages/test_multilingual.py).
"""

import ml_collections

from lanser_jax import config_lib
from lanser_jax.stages import defaults

# Our translations of "The emotion of the conversation is {}." (the paper's template).
TEMPLATES = {
    "en": "The emotion of the conversation is {}.",
    "es": "La emoción de la conversación es {}.",
    "fr": "L'émotion de la conversation est {}.",
    "de": "Die Emotion des Gesprächs ist {}.",
    "it": "L'emozione della conversazione è {}.",
    "pt": "A emoção da conversa é {}.",
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, languages="+".join(TEMPLATES), taxonomy="ekman7")
  languages = tuple(l for l in arg.languages.split("+") if l)
  unknown = [l for l in languages if l not in TEMPLATES]
  if unknown:
    raise ValueError(f"languages={arg.languages!r}: no template for {unknown}; known {sorted(TEMPLATES)}")
  c = defaults.default_config()
  c.num_pieces = 16
  c.manifest = ml_collections.ConfigDict({"adapter": "folder", "root": ""})
  c.asr.model = "large-v3"
  c.asr.language = ""  # detect per utterance
  c.label.languages = languages
  c.labeler.kind = "entailment"
  c.labeler.model = "joeddav/xlm-roberta-large-xnli"
  c.labeler.taxonomy = arg.taxonomy
  c.labeler.templates = tuple(TEMPLATES[l] for l in languages)
  c.labeler.template_languages = languages
  c.features.label_source = "weak"
  return c
