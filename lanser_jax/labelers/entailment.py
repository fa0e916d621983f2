"""Zero-shot emotion scores by textual entailment: premise = transcript, hypothesis = template.format(label).

Speed comes from doing no wasted work, not from a different model:
  * every hypothesis is tokenised once, every transcript once; pairs are assembled from token ids with the
    tokenizer's own pair template (read from its post-processor), so nothing is tokenised N x L times;
  * all transcript x label pairs of a batch go through one jitted call;
  * padding goes to the smallest of a few fixed lengths (`length_buckets`), and transcripts are sorted by
    length inside a window so that a batch's pairs are of similar length: a handful of compiled shapes,
    and no recompilation after warm-up;
  * a background thread tokenises and assembles batch i+1 while batch i runs.

The score is defined in `scores_from_logits` (and documented in docs/labelling.md, "Weak labels").
A prompt ensemble (several templates) scores T x L hypotheses per transcript in the same batches, so its
cost is T times one template's; `reduce_templates` defines how the T score vectors become one.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lanser_jax.utils import prefetch
from lanser_jax.labelers import hf
from lanser_jax import labelers

SCORE_MODES = ("label_softmax", "entail_vs_contradict")
TEMPLATE_REDUCE = ("probs", "logits")


def check_templates(template: str | Sequence[str]) -> tuple[str, ...]:
  """One template or several, as a non-empty tuple; each must hold one '{}' for the label."""
  templates = (template,) if isinstance(template, str) else tuple(template)
  if not templates:
    raise ValueError("no templates: give labeler.template or a non-empty labeler.templates")
  for t in templates:
    if not isinstance(t, str) or "{}" not in t:
      raise ValueError(f"template {t!r} has no '{{}}' for the label")
  if len(set(templates)) != len(templates):
    raise ValueError(f"templates repeat: {list(templates)}")
  return templates


def check_reduce(template_reduce: str) -> str:
  if template_reduce not in TEMPLATE_REDUCE:
    raise ValueError(f"unknown template_reduce {template_reduce!r}; expected one of {TEMPLATE_REDUCE}")
  return template_reduce


# ---------------------------------------------------------------------------------------------------------
# Batching helpers shared with the sentence-encoder labeler.
# ---------------------------------------------------------------------------------------------------------

def check_texts(texts: Sequence[str]) -> list[str]:
  """Rejects non-strings with the offending index, so that the calling stage can name the utterance."""
  texts = list(texts)
  for i, text in enumerate(texts):
    if not isinstance(text, str):
      raise TypeError(f"texts[{i}] is {type(text).__name__} ({text!r:.40}), expected str")
  return texts


def make_buckets(length_buckets: Sequence[int], max_length: int) -> tuple[int, ...]:
  """Sorted padded lengths, capped at max_length and always including it (so every pair fits one)."""
  buckets = sorted({int(b) for b in length_buckets if 0 < int(b) < max_length} | {int(max_length)})
  return tuple(buckets)


def bucket_for(length: int, buckets: Sequence[int]) -> int:
  for b in buckets:
    if length <= b:
      return b
  raise ValueError(f"sequence of {length} tokens exceeds the largest bucket {buckets[-1]}")


def independent_backend(tokenizer):
  """A private copy of the fast tokenizer's Rust backend with truncation and padding switched off."""
  import tokenizers  # installed with transformers; the backend class lives there

  backend = tokenizers.Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
  backend.no_truncation()
  backend.no_padding()
  return backend


def encode_ids(backend, texts: Sequence[str], add_special_tokens: bool) -> list[np.ndarray]:
  encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no offsets needed
  return [np.asarray(e.ids, np.int32) for e in encode(list(texts), add_special_tokens=add_special_tokens)]


# ---------------------------------------------------------------------------------------------------------
# Pair assembly from token ids.
# ---------------------------------------------------------------------------------------------------------

class PairTemplate:
  """The special tokens a tokenizer puts around a (first, second) pair: prefix A middle B suffix.

  Read from the tokenizer's post-processor by encoding one probe pair, so it holds for RoBERTa
  (`<s> A </s></s> B </s>`), BERT (`[CLS] A [SEP] B [SEP]`, types 0/1), BART, DeBERTa, ...
  """

  def __init__(self, backend):
    probe = backend.encode("first words", "second words", add_special_tokens=True)
    seq, ids, types = probe.sequence_ids, probe.ids, probe.type_ids
    parts: dict[str, list[int]] = {"prefix": [], "middle": [], "suffix": []}
    part_types: dict[str, list[int]] = {"prefix": [], "middle": [], "suffix": []}
    state = "prefix"
    order = []
    for s, i, t in zip(seq, ids, types):
      if s is None:
        parts[state].append(i)
        part_types[state].append(t)
      else:
        if not order or order[-1][0] != s:
          order.append((s, t))
        state = "middle" if s == 0 else "suffix"
    if [s for s, _ in order] != [0, 1]:
      raise hf.CheckpointError(f"tokenizer pair layout {seq} is not 'prefix A middle B suffix'")
    self.type_a, self.type_b = order[0][1], order[1][1]
    self.prefix, self.middle, self.suffix = (np.asarray(parts[k], np.int32) for k in parts)
    self.prefix_types, self.middle_types, self.suffix_types = (
        np.asarray(part_types[k], np.int32) for k in part_types)
    self.num_special = len(self.prefix) + len(self.middle) + len(self.suffix)

  def head(self, premise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([self.prefix, premise, self.middle])
    types = np.concatenate([self.prefix_types, np.full(len(premise), self.type_a, np.int32),
                            self.middle_types])
    return ids, types

  def tail(self, hypothesis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([hypothesis, self.suffix])
    types = np.concatenate([np.full(len(hypothesis), self.type_b, np.int32), self.suffix_types])
    return ids, types


def scores_from_logits(logits: np.ndarray, entail: int, contradict: int | None, mode: str) -> np.ndarray:
  """The label score from NLI logits [N, L, C] -> [N, L] float32.

  'label_softmax' (default): softmax over the L labels of each transcript's entailment logits, i.e.
    P(label | transcript) when exactly one label is true -- the transformers zero-shot pipeline with
    multi_label=False. Rows sum to 1, so the vector is a proper soft label and the argmax is the label
    the model finds most entailed.
  'entail_vs_contradict': for each pair independently, softmax over its [contradiction, entailment]
    logits, taking the entailment probability -- the pipeline with multi_label=True (neutral ignored).
  """
  logits = np.asarray(logits, np.float64)
  if mode == "label_softmax":
    x = logits[..., entail]
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
  if mode == "entail_vs_contradict":
    diff = logits[..., contradict] - logits[..., entail]
    return (1.0 / (1.0 + np.exp(diff))).astype(np.float32)
  raise ValueError(f"unknown score mode {mode!r}; expected one of {SCORE_MODES}")


def reduce_templates(logits: np.ndarray, entail: int, contradict: int | None, mode: str,
                     template_reduce: str) -> np.ndarray:
  """One score vector per transcript from per-template NLI logits [N, T, L, C] -> [N, L] float32.

  'probs' (default): the mean over templates of each template's scores -- an average of T soft labels, so
    rows still sum to 1 under 'label_softmax'; 'logits': the scores of the mean logits (a geometric-mean
    style ensemble: a template that is very sure counts for more). With one template both are that
    template's scores.
  """
  logits = np.asarray(logits, np.float32)
  if check_reduce(template_reduce) == "logits":
    return scores_from_logits(logits.mean(axis=1), entail, contradict, mode)
  per_template = [scores_from_logits(logits[:, t], entail, contradict, mode) for t in range(logits.shape[1])]
  return np.mean(per_template, axis=0).astype(np.float32)


class EntailmentLabeler:
  """Scores transcripts against a label set with an MNLI-style Flax sequence classifier.

  `template` is one template or a sequence of them (a prompt ensemble): hypotheses are
  [template.format(label) for template in templates for label in labels], all paired with each transcript
  in the same jitted calls (batch_size transcripts x T x L pairs per call).
  """

  def __init__(self, model: hf.FlaxTextModel, tokenizer, label_names: Sequence[str],
               template: str | Sequence[str] = "The emotion of the conversation is {}.", *,
               max_length: int = 256,
               batch_size: int = 8,
               length_buckets: Sequence[int] = labelers.LENGTH_BUCKETS,
               sort_window: int = 256, score_mode: str = "label_softmax", template_reduce: str = "probs"):
    if score_mode not in SCORE_MODES:
      raise ValueError(f"unknown score mode {score_mode!r}; expected one of {SCORE_MODES}")
    self.templates = check_templates(template)
    self.template_reduce = check_reduce(template_reduce)
    if tokenizer.pad_token_id is None:
      raise hf.CheckpointError(f"{model.name}: the tokenizer has no pad token")
    self.model = model
    self.label_names = list(label_names)
    self.template = self.templates[0]
    self.hypotheses = [t.format(label) for t in self.templates for label in self.label_names]
    self.entail_index = hf.class_index(model.config, "entailment", model.name)
    # Only the pairwise mode needs a contradiction class (2-class NLI heads work with label_softmax).
    self.contradict_index = (hf.class_index(model.config, "contradiction", model.name)
                             if score_mode == "entail_vs_contradict" else None)
    self.score_mode = score_mode
    self.batch_size = int(batch_size)
    self.sort_window = max(int(sort_window) // self.batch_size, 1) * self.batch_size
    self.max_length = int(min(max_length, getattr(tokenizer, "model_max_length", max_length)))
    self.buckets = make_buckets(length_buckets, self.max_length)
    self.pad_id = int(tokenizer.pad_token_id)
    self._backend = independent_backend(tokenizer)
    self.pair_template = PairTemplate(self._backend)
    hypothesis_ids = encode_ids(self._backend, self.hypotheses, add_special_tokens=False)
    self._tails = [self.pair_template.tail(h) for h in hypothesis_ids]
    hyp_lengths = np.array([len(h) for h in hypothesis_ids])
    # Room left for the transcript in each pair ('only_first' truncation, as the pipeline does).
    self._budgets = self.max_length - self.pair_template.num_special - hyp_lengths
    if self._budgets.min() < 1:
      worst = self.hypotheses[int(self._budgets.argmin())]
      raise ValueError(f"hypothesis {worst!r} leaves no room for the transcript within "
                       f"max_length={self.max_length}")
    self.num_traces = 0  # how many times the model function was traced, i.e. compiled
    self._logits_fn = jax.jit(self._pair_logits)

  def _pair_logits(self, params, input_ids, attention_mask, token_type_ids):
    self.num_traces += 1  # runs only while tracing: counts compilations
    out = self.model.apply(params, input_ids, attention_mask, token_type_ids)
    return out.logits.astype(jnp.float32)

  # -- batches ---------------------------------------------------------------------------------------------

  def _assemble(self, premises: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """All pairs of up to batch_size transcripts, padded to one bucket; rows beyond the data copy row 0."""
    num_labels = len(self.hypotheses)  # T x L: every template's hypotheses
    heads = []
    longest = 0
    for premise in premises:
      if len(premise) > self._budgets.min():  # rare: a transcript that must be truncated for some label
        per_label = [self.pair_template.head(premise[:b]) for b in self._budgets]
      else:
        per_label = [self.pair_template.head(premise)] * num_labels
      heads.append(per_label)
      longest = max(longest, max(len(h[0]) + len(t[0]) for h, t in zip(per_label, self._tails)))
    width = bucket_for(longest, self.buckets)
    rows = self.batch_size * num_labels
    ids = np.full((rows, width), self.pad_id, np.int32)
    types = np.zeros((rows, width), np.int32)
    mask = np.zeros((rows, width), np.int32)
    r = 0
    for per_label in heads:
      for (head_ids, head_types), (tail_ids, tail_types) in zip(per_label, self._tails):
        n_head, n = len(head_ids), len(head_ids) + len(tail_ids)
        ids[r, :n_head], ids[r, n_head:n] = head_ids, tail_ids
        types[r, :n_head], types[r, n_head:n] = head_types, tail_types
        mask[r, :n] = 1
        r += 1
    ids[r:], types[r:], mask[r:] = ids[0], types[0], mask[0]
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

  def _batches(self, texts: list[str]) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(indices into texts, model inputs), sorted by length within each window of sort_window texts."""
    for start in range(0, len(texts), self.sort_window):
      window = texts[start:start + self.sort_window]
      premises = encode_ids(self._backend, window, add_special_tokens=False)
      order = np.argsort([len(p) for p in premises], kind="stable")
      for b in range(0, len(order), self.batch_size):
        chosen = order[b:b + self.batch_size]
        yield start + chosen, self._assemble([premises[i] for i in chosen])

  # -- public ----------------------------------------------------------------------------------------------

  def template_logits(self, texts: Sequence[str]) -> np.ndarray:
    """Raw NLI logits per template, float32 [len(texts), len(templates), len(label_names), num_classes]."""
    pairs = self._pair_logits_all(texts)
    return pairs.reshape(len(pairs), len(self.templates), len(self.label_names), pairs.shape[-1])

  def logits(self, texts: Sequence[str]) -> np.ndarray:
    """NLI logits, float32 [len(texts), len(label_names), num_classes]: the raw logits with one template,
    their mean over templates with several."""
    return self.template_logits(texts).mean(axis=1)

  def _pair_logits_all(self, texts: Sequence[str]) -> np.ndarray:
    texts = check_texts(texts)
    # Short utterances repeat ("Yeah.", "Thank you."): each distinct transcript is scored once.
    first = {}
    inverse = np.array([first.setdefault(text, len(first)) for text in texts], np.int64)
    texts = list(first)
    num_labels = len(self.hypotheses)
    out = np.zeros((len(texts), num_labels, self.model.config.num_labels), np.float32)
    pending = None  # (indices, device array): fetch after dispatching the next batch
    for indices, inputs in prefetch.prefetch(self._batches(texts)):
      types = inputs["token_type_ids"] if self.model.takes_token_type_ids else None
      result = self._logits_fn(self.model.params, inputs["input_ids"], inputs["attention_mask"], types)
      if pending is not None:
        self._store(out, *pending)
      pending = (indices, result)
    if pending is not None:
      self._store(out, *pending)
    return out[inverse]

  def _store(self, out: np.ndarray, indices: np.ndarray, result) -> None:
    num_labels = len(self.hypotheses)
    block = np.asarray(result)[:len(indices) * num_labels]
    out[indices] = block.reshape(len(indices), num_labels, -1)

  def score(self, texts: Sequence[str]) -> np.ndarray:
    """Label scores, float32 [len(texts), len(label_names)]; see scores_from_logits for the definition and
    reduce_templates for a prompt ensemble's."""
    return reduce_templates(self.template_logits(texts), self.entail_index, self.contradict_index,
                            self.score_mode, self.template_reduce)

  @property
  def pairs_per_text(self) -> int:
    """(transcript, hypothesis) pairs scored per distinct transcript: the labelling cost's unit."""
    return len(self.hypotheses)

  def warm_up(self) -> None:
    """Compiles every bucket now (e.g. before timing), so that later calls never compile."""
    for width in self.buckets:
      rows = self.batch_size * len(self.hypotheses)
      ones = np.ones((rows, width), np.int32)
      types = np.zeros_like(ones) if self.model.takes_token_type_ids else None
      jax.block_until_ready(self._logits_fn(self.model.params, ones * self.pad_id, ones, types))
