"""Weak labels without an NLI checkpoint: cosine similarity of sentence embeddings.

The transcript and each hypothesis (template.format(label)) are embedded with a Flax BERT-style encoder by
mean pooling over the attention mask and L2 normalisation -- the way all-MiniLM-L6-v2 is meant to be used
(sentence-transformers' Transformer -> Pooling(mean) -> Normalize). The label score is

    softmax_over_labels(cosine(transcript, hypothesis) / temperature)

with temperature 0.05 by default: the scale (20) all-MiniLM-L6-v2 was trained with in its contrastive loss,
so that similarity gaps the model was trained to care about give distinct probabilities. Scores are then on
the same [0, 1], rows-sum-to-1 scale as the entailment labeler's default 'label_softmax' scores. With several
templates (a prompt ensemble) each label has T hypothesis embeddings; the scores are the mean over templates
of the probabilities ('probs') or the softmax of the mean cosine / temperature ('logits').
"""

from __future__ import annotations

from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lanser_jax.utils import prefetch
from lanser_jax.labelers import entailment, hf


class SentenceEncoderLabeler:
  """Scores transcripts by embedding similarity to each label's hypothesis sentence."""

  def __init__(self, model: hf.FlaxTextModel, tokenizer, label_names: Sequence[str],
               template: str | Sequence[str] = "The emotion of the conversation is {}.", *,
               max_length: int = 256, batch_size: int = 64, length_buckets: Sequence[int] = (16, 32, 64, 128),
               sort_window: int = 1024, temperature: float = 0.05, template_reduce: str = "probs"):
    self.templates = entailment.check_templates(template)
    self.template_reduce = entailment.check_reduce(template_reduce)
    if temperature <= 0:
      raise ValueError(f"temperature must be positive, got {temperature}")
    self.model = model
    self.label_names = list(label_names)
    self.template = self.templates[0]
    self.temperature = float(temperature)
    self.batch_size = int(batch_size)
    self.sort_window = max(int(sort_window) // self.batch_size, 1) * self.batch_size
    self.max_length = int(min(max_length, getattr(tokenizer, "model_max_length", max_length)))
    self.buckets = entailment.make_buckets(length_buckets, self.max_length)
    self.pad_id = int(tokenizer.pad_token_id or 0)
    self._backend = entailment.independent_backend(tokenizer)
    # Single sequences keep their special tokens; truncation keeps the last one ([SEP]) in place.
    self._backend.enable_truncation(self.max_length)
    self.num_traces = 0
    self._embed_fn = jax.jit(self._embed)
    # [T * L, hidden], template-major: row t * L + l is template t, label l.
    self.hypothesis_embeddings = self.embed([t.format(label) for t in self.templates
                                             for label in self.label_names])

  def _embed(self, params, input_ids, attention_mask, token_type_ids):
    self.num_traces += 1  # runs only while tracing: counts compilations
    hidden = self.model.apply(params, input_ids, attention_mask, token_type_ids).last_hidden_state
    mask = attention_mask[..., None].astype(jnp.float32)
    pooled = (hidden.astype(jnp.float32) * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1e-9)
    return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)

  def _batches(self, texts: list[str]) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    encode = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
    for start in range(0, len(texts), self.sort_window):
      encodings = encode(texts[start:start + self.sort_window], add_special_tokens=True)
      order = np.argsort([len(e.ids) for e in encodings], kind="stable")
      for b in range(0, len(order), self.batch_size):
        chosen = order[b:b + self.batch_size]
        width = entailment.bucket_for(max(len(encodings[i].ids) for i in chosen), self.buckets)
        ids = np.full((self.batch_size, width), self.pad_id, np.int32)
        types = np.zeros((self.batch_size, width), np.int32)
        mask = np.zeros((self.batch_size, width), np.int32)
        for r, i in enumerate(chosen):
          n = len(encodings[i].ids)
          ids[r, :n], types[r, :n], mask[r, :n] = encodings[i].ids, encodings[i].type_ids, 1
        ids[len(chosen):], mask[len(chosen):] = ids[0], mask[0]  # filler rows, dropped below
        yield start + chosen, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

  def embed(self, texts: Sequence[str]) -> np.ndarray:
    """Unit-norm sentence embeddings, float32 [len(texts), hidden]."""
    texts = entailment.check_texts(texts)
    first = {}  # each distinct transcript is embedded once
    inverse = np.array([first.setdefault(text, len(first)) for text in texts], np.int64)
    texts = list(first)
    out = np.zeros((len(texts), self.model.config.hidden_size), np.float32)
    for indices, inputs in prefetch.prefetch(self._batches(texts)):
      types = inputs["token_type_ids"] if self.model.takes_token_type_ids else None
      result = self._embed_fn(self.model.params, inputs["input_ids"], inputs["attention_mask"], types)
      out[indices] = np.asarray(result)[:len(indices)]
    return out[inverse]

  def template_similarities(self, texts: Sequence[str]) -> np.ndarray:
    """Cosine similarity to each template's hypothesis of each label, float32 [N, T, L] in [-1, 1]."""
    sims = self.embed(texts) @ self.hypothesis_embeddings.T
    return sims.reshape(len(sims), len(self.templates), len(self.label_names))

  def similarities(self, texts: Sequence[str]) -> np.ndarray:
    """Cosine similarity of each transcript to each label's hypothesis, float32 [N, L] in [-1, 1] (the mean
    over templates with several)."""
    return self.template_similarities(texts).mean(axis=1)

  @property
  def pairs_per_text(self) -> int:
    """Hypotheses compared per transcript (the transcript itself is embedded once whatever T is)."""
    return len(self.templates) * len(self.label_names)

  def score(self, texts: Sequence[str]) -> np.ndarray:
    """softmax(cosine / temperature) over labels, float32 [len(texts), len(label_names)]."""
    sims = self.template_similarities(texts).astype(np.float64) / self.temperature
    if self.template_reduce == "logits":
      return _softmax(sims.mean(axis=1)).astype(np.float32)
    return _softmax(sims).mean(axis=1).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
  x = x - x.max(axis=-1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=-1, keepdims=True)
