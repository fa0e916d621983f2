"""Whisper on JAX (asr.backend=jax): transformers' Flax Whisper, jit-compiled, the batch sharded over the local
devices, producing the records, figures and packing of the faster-whisper backend (whisper.py).

What is decoded is what faster-whisper decodes with beam_size=1: the log-mel of faster-whisper's feature
extractor (the clip's own frames normalised by their maximum, zeros after them; computed here on the device),
the prompt `<|startoftranscript|>[language, task]<|notimestamps|>`, the model's suppress_tokens at every step
and its begin_suppress_tokens at the first, greedy choice, no_speech_prob from the logits at
`<|startoftranscript|>`, avg_logprob = (log-probabilities of the text tokens and end-of-text) / (tokens + 1),
and at most `whisper.token_bound` tokens. Weights come from a faster-whisper folder (converted exactly,
whisper_convert.py) or any Hugging Face Whisper checkpoint.

Shapes are bucketed so that a run compiles a handful of programs: the batch is padded to a power-of-two
multiple of the data shards, and the decoder's key/value cache to the smallest of CACHE_BUCKETS that holds the
prompt and the batch's token bound (a batch of 3 s clips decodes with a 64-entry cache, not 448). The encoder
always reads a 30 s window, as Whisper was trained to; packing (asr.packing=on) is what spares short
utterances the padding. Generation stops when every row has ended.

Differences from the faster-whisper backend, each deliberate: the repetition guard's retry is greedy decoding
that may not repeat a 3-gram (not a 5-beam search with that rule); clips over 30 s are cut at the quietest
0.1 s within the last 5 s of each 30 s window and each piece is transcribed as an utterance (not faster-
whisper's timestamp-driven sequential path); the packing alignment is computed here (OpenAI Whisper's
alignment-head DTW, as CTranslate2's `align`) with the same heads and median filter.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from lanser_jax.engine import sharding as sharding_lib
from lanser_jax.labelers import hf
from lanser_jax.labelers import whisper

SAMPLE_RATE = 16000
N_FFT = 400
FRAMES = 3000  # log-mel frames of a 30 s window
WINDOW_SAMPLES = FRAMES * whisper.HOP_LENGTH
CACHE_BUCKETS = (32, 64, 128, 256, 448)  # decoder cache lengths (prompt + generated tokens)
ALIGN_BUCKETS = (32, 64, 128, 256, 448)  # token sequence lengths of the alignment pass
RETRY_NO_REPEAT_NGRAM = whisper.FALLBACK_NO_REPEAT_NGRAM
MEDIAN_FILTER_WIDTH = 7  # CTranslate2's align() as faster-whisper calls it
LONG_CUT_SEARCH_SECONDS = 5.0  # a long clip is cut at the quietest 0.1 s of the last 5 s of each window
_DTYPES = {"default": jnp.float32, "float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass
class Generation:
  """One row's decode, shaped like CTranslate2's WhisperGenerationResult (what Transcriber._result reads)."""
  sequences_ids: list[list[int]]
  scores: list[float]  # cumulative log-probability / number of tokens (CTranslate2's length_penalty=1)
  no_speech_prob: float


@dataclasses.dataclass
class Alignment:
  """One row's token-to-frame path, shaped like CTranslate2's WhisperAlignmentResult."""
  alignments: list[tuple[int, int]]
  text_token_probs: list[float]


def mel_filters(num_mels: int) -> np.ndarray:
  from faster_whisper.feature_extractor import FeatureExtractor
  return FeatureExtractor.get_mel_filters(SAMPLE_RATE, N_FFT, num_mels).astype(np.float32)


def log_mel(waves: jax.Array, lengths: jax.Array, filters: jax.Array) -> jax.Array:
  """[B, mels, 3000] features of zero-padded 30 s waves [B, 480000] with `lengths` samples of audio each, as
  faster-whisper computes them for the clip alone: `lengths // 160` frames normalised by the maximum of their
  first `lengths // 160 + 1`, then zeros."""
  hop = whisper.HOP_LENGTH
  padded = jnp.pad(waves, ((0, 0), (0, hop + N_FFT)))  # room for frame 3000 (it counts in the maximum)
  padded = jnp.pad(padded, ((0, 0), (N_FFT // 2, 0)), mode="reflect")
  index = hop * jnp.arange(FRAMES + 1)[:, None] + jnp.arange(N_FFT)[None, :]
  window = jnp.asarray(np.hanning(N_FFT + 1)[:-1], jnp.float32)
  spectrum = jnp.fft.rfft(padded[:, index] * window, axis=-1)
  power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
  mel = jnp.einsum("btf,mf->btm", power, filters, precision=jax.lax.Precision.HIGHEST)
  logs = jnp.log10(jnp.maximum(mel, 1e-10))
  frames = jnp.arange(FRAMES + 1)[None, :]
  top = jnp.max(jnp.where((frames <= lengths[:, None] // hop)[..., None], logs, -jnp.inf), axis=(1, 2))
  logs = (jnp.maximum(logs, top[:, None, None] - 8.0) + 4.0) / 4.0
  logs = jnp.where((frames < lengths[:, None] // hop)[..., None], logs, 0.0)[:, :FRAMES]
  return logs.transpose(0, 2, 1)


def _bucket(n: int, buckets: Sequence[int], limit: int) -> int:
  return next((b for b in buckets if b >= n and b <= limit), limit)


class JaxTranscriber(whisper.Transcriber):
  """asr.backend=jax: the `whisper.Transcriber` interface on Flax Whisper (see the module docstring)."""

  def __init__(self, options: whisper.AsrOptions, devices=None):
    if options.compute_type not in _DTYPES:
      raise ValueError(f"asr.compute_type={options.compute_type!r} is CTranslate2's; asr.backend=jax takes "
                       f"{sorted(_DTYPES)}")
    if options.beam_size != 1:
      logging.warning("asr.beam_size=%d: the jax backend decodes greedily (beam 1)", options.beam_size)
    self.options = options
    self.whisper = hf.load_whisper(_model_name(options.model), _DTYPES[options.compute_type])
    self.config = self.whisper.config
    self.is_multilingual = self.config.vocab_size >= 51865
    self.mesh = sharding_lib.make_mesh("data=-1", devices if devices is not None else jax.local_devices())
    self.shards = sharding_lib.batch_shards(self.mesh)
    self._rows = sharding_lib.batch_sharding(self.mesh)
    self.params = jax.device_put(self.whisper.params, NamedSharding(self.mesh, P()))
    self._filters = jnp.asarray(mel_filters(self.config.num_mel_bins))
    self._tokenizers = {}
    self.guard_counts = dict.fromkeys(whisper.GUARD_COUNTS, 0)
    tok = self._tokenizer(options.language or "en")
    from faster_whisper.transcribe import get_suppressed_tokens
    self.eot, self.no_speech = tok.eot, tok.no_speech
    # What faster-whisper hands CTranslate2: its non-speech tokens and the task/start tokens at every step
    # (suppress_tokens=[-1] expanded), the model's begin_suppress_tokens at the first.
    suppress = np.zeros(self.config.vocab_size, bool)
    suppress[[t for t in get_suppressed_tokens(tok, [-1]) if 0 <= t < self.config.vocab_size]] = True
    begin = np.zeros(self.config.vocab_size, bool)
    begin[[t for t in self.whisper.begin_suppress_tokens if 0 <= t < self.config.vocab_size]] = True
    self._suppress, self._begin = jnp.asarray(suppress), jnp.asarray(begin)
    self.model = self.whisper.model

  # -------------------------------------------------------------------------------------------------
  # The backend's parts of `whisper.Transcriber`.

  def _tokenizer(self, language: str):
    from faster_whisper.tokenizer import Tokenizer
    if language not in self._tokenizers:
      self._tokenizers[language] = Tokenizer(self.whisper.tokenizer, self.is_multilingual, task="transcribe",
                                             language=language)
    return self._tokenizers[language]

  def _pad_rows(self, n: int) -> int:
    rows = self.shards
    while rows < n:
      rows *= 2
    return rows

  def _encode(self, waves: Sequence[np.ndarray]):
    """Encoder states [rows, 1500, d] (rows: len(waves) padded, sharded over the data axis)."""
    rows = self._pad_rows(len(waves))
    batch = np.zeros((rows, WINDOW_SAMPLES), np.float32)
    lengths = np.zeros(rows, np.int32)
    for i, w in enumerate(waves):
      batch[i, :len(w)] = w
      lengths[i] = len(w)
    batch, lengths = jax.device_put((batch, lengths), self._rows)
    return _encode(self.model, self.params, batch, lengths, self._filters)

  def _languages(self, encoder_output, n: int) -> list[str]:
    if not self.is_multilingual:
      return ["en"] * n
    if self.options.language:
      return [self.options.language] * n
    from faster_whisper.tokenizer import _LANGUAGE_CODES
    vocab = self.whisper.tokenizer
    codes = [c for c in _LANGUAGE_CODES if vocab.token_to_id(f"<|{c}|>") is not None]
    lang_ids = jnp.asarray([vocab.token_to_id(f"<|{c}|>") for c in codes], jnp.int32)
    best = np.asarray(_detect(self.model, self.params, encoder_output, self._tokenizer("en").sot, lang_ids))
    return [codes[i] for i in best[:n]]

  def _generate(self, waves: Sequence[np.ndarray], retry: bool = False):
    encoder_output = self._encode(waves)
    languages = self._languages(encoder_output, len(waves))
    tokenizers = [self._tokenizer(lang) for lang in languages]
    prompts = [list(t.sot_sequence) + [t.no_timestamps] for t in tokenizers]
    rows = encoder_output.shape[0]
    prompts += [prompts[0]] * (rows - len(prompts))
    bound = max(whisper.token_bound(len(w)) for w in waves)
    cache = _bucket(len(prompts[0]) + bound, CACHE_BUCKETS, self.config.max_target_positions)
    bound = min(bound, cache - len(prompts[0]))
    sot_index = prompts[0].index(tokenizers[0].sot)
    tokens, lengths, scores, no_speech = jax.device_get(_greedy(
        self.model, self.params, encoder_output, jnp.asarray(prompts, jnp.int32), jnp.int32(bound),
        self._suppress, self._begin, cache_len=cache, sot_index=sot_index, eot=self.eot,
        no_speech=self.no_speech, ngram=RETRY_NO_REPEAT_NGRAM if retry else 0))
    outs = []
    for i in range(len(waves)):
      ids = [int(t) for t in tokens[i, :lengths[i]]]
      outs.append(Generation([ids], [float(scores[i]) / max(len(ids), 1)], float(no_speech[i])))
    return encoder_output, languages, tokenizers, outs

  def _align(self, encoder_output, tokenizers, tokens, frames):
    """Token-to-frame paths (OpenAI Whisper's find_alignment, as CTranslate2's `align`) of each window's
    decoded tokens."""
    out = [None] * len(tokens)
    rows = [k for k, toks in enumerate(tokens) if toks]
    if not rows:
      return out
    sequences = [list(tokenizers[k].sot_sequence) + [tokenizers[k].no_timestamps] + list(tokens[k]) + [self.eot]
                 for k in range(len(tokens))]
    length = _bucket(max(len(sequences[k]) for k in rows), ALIGN_BUCKETS, self.config.max_target_positions)
    batch = np.full((encoder_output.shape[0], length), self.eot, np.int32)
    for k in rows:
      batch[k, :len(sequences[k])] = sequences[k]
    heads = tuple((int(layer), int(head)) for layer, head in self.whisper.alignment_heads)
    weights, probs = jax.device_get(_cross_attention(self.model, self.params, encoder_output,
                                                     jnp.asarray(batch), heads=heads, eot=self.eot))
    for k in rows:
      offset, n = len(tokenizers[k].sot_sequence), len(tokens[k])
      w = weights[k, :, :len(sequences[k]), :frames[k] // 2].astype(np.float64)
      w = w / np.maximum(w.sum(-1, keepdims=True), 1e-30)  # the softmax over the window's own frames
      w = (w - w.mean(-2, keepdims=True)) / np.maximum(w.std(-2, keepdims=True), 1e-12)
      w = _median_filter(w, MEDIAN_FILTER_WIDTH).mean(0)
      matrix = w[offset:offset + n + 1]  # rows predicting each text token and end-of-text
      out[k] = Alignment(_dtw(-matrix), [float(p) for p in probs[k, offset:offset + n]])
    return out

  def _transcribe_long(self, wave: np.ndarray) -> dict[str, Any]:
    """A clip over 30 s: cut at quiet points into windows, each transcribed as an utterance."""
    from faster_whisper.transcribe import get_compression_ratio
    pieces = split_long(wave)
    results = []
    for start in range(0, len(pieces), max(self.options.batch_size, 1)):
      results.extend(self.transcribe(pieces[start:start + max(self.options.batch_size, 1)]))
    text = " ".join(r["text"] for r in results if r["text"]).strip()
    return {"text": text, "language": results[0]["language"],
            "avg_logprob": float(np.mean([r["avg_logprob"] for r in results])),
            "no_speech_prob": float(np.mean([r["no_speech_prob"] for r in results])),
            "compression_ratio": float(get_compression_ratio(text)) if text else 0.0}


def _model_name(model: str) -> str:
  """faster-whisper's short names ('large-v3') are OpenAI's Hugging Face checkpoints here."""
  import os
  if os.path.isdir(model) or "/" in model:
    return model
  return f"openai/whisper-{model}"


def split_long(wave: np.ndarray) -> list[np.ndarray]:
  """Windows of at most 30 s, each cut at the quietest 0.1 s of its last LONG_CUT_SEARCH_SECONDS."""
  step, search = SAMPLE_RATE // 10, int(LONG_CUT_SEARCH_SECONDS * SAMPLE_RATE)
  pieces, pos = [], 0
  while len(wave) - pos > WINDOW_SAMPLES:
    lo = pos + WINDOW_SAMPLES - search
    energy = np.square(wave[lo:pos + WINDOW_SAMPLES].astype(np.float64)).reshape(-1, step).sum(1)
    cut = lo + int(np.argmin(energy)) * step + step // 2
    pieces.append(wave[pos:cut])
    pos = cut
  pieces.append(wave[pos:])
  return pieces


def _median_filter(x: np.ndarray, width: int) -> np.ndarray:
  """Median over `width` frames along the last axis, the edges reflected (OpenAI Whisper's median_filter)."""
  pad = width // 2
  if x.shape[-1] <= pad:
    return x
  padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
  return np.median(np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1), axis=-1)


def _dtw(cost: np.ndarray) -> list[tuple[int, int]]:
  """The monotonic (token, frame) path of least total cost (OpenAI Whisper's dtw and its tie-breaking), each
  row's recursion c[j] = x[j] + min(diagonal/up[j], c[j-1]) solved with a running minimum of prefix sums."""
  n, m = cost.shape
  total = np.full((n + 1, m + 1), np.inf)
  total[0, 0] = 0.0
  for i in range(1, n + 1):
    best = np.minimum(total[i - 1, :-1], total[i - 1, 1:])  # diagonal (j-1) or up (j), per column j=1..m
    sums = np.concatenate([[0.0], np.cumsum(cost[i - 1])])
    total[i, 1:] = sums[1:] + np.minimum.accumulate(best - sums[:-1])
  path, i, j = [], n, m
  while i > 0 and j > 0:
    path.append((i - 1, j - 1))
    c0, c1, c2 = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
    if c0 < c1 and c0 < c2:
      i, j = i - 1, j - 1
    elif c1 < c0 and c1 < c2:
      i -= 1
    else:
      j -= 1
  return path[::-1]


# ---------------------------------------------------------------------------------------------------
# The compiled programs (the model object is static: its module and config define the program).


@functools.partial(jax.jit, static_argnums=0)
def _encode(model, params, waves, lengths, filters):
  features = log_mel(waves, lengths, filters).astype(model.dtype)
  return model.encode(features, params=params).last_hidden_state


@functools.partial(jax.jit, static_argnums=0)
def _detect(model, params, encoder_output, sot, lang_ids):
  """The most probable language token (index into lang_ids) of each row, from the logits after SOT."""
  rows = encoder_output.shape[0]
  logits = model.decode(jnp.full((rows, 1), sot, jnp.int32), (encoder_output,), params=params).logits
  return jnp.argmax(logits[:, 0, lang_ids], axis=-1)


@functools.partial(jax.jit, static_argnums=0, static_argnames=("cache_len", "sot_index", "eot", "no_speech",
                                                                "ngram"))
def _greedy(model, params, encoder_output, prompts, bound, suppress, begin, *, cache_len, sot_index, eot,
            no_speech, ngram):
  """Greedy decoding of every row: (tokens [B, 224-bucket], lengths, summed log-probs, no_speech_prob)."""
  rows, prompt_len = prompts.shape
  steps = cache_len - prompt_len
  mask = jnp.ones((rows, cache_len), jnp.int32)
  cache = model.init_cache(rows, cache_len, (encoder_output,))
  out = model.decode(prompts, (encoder_output,), decoder_attention_mask=mask,
                     decoder_position_ids=jnp.broadcast_to(jnp.arange(prompt_len), prompts.shape),
                     past_key_values=cache, params=params)
  first = out.logits.astype(jnp.float32)
  cross_kv = hf.whisper_cross_kv(params, encoder_output, model.config.decoder_attention_heads)
  no_speech_prob = jax.nn.softmax(first[:, sot_index])[:, no_speech]
  state = (jnp.int32(0), jnp.full((rows, steps), eot, jnp.int32), jnp.zeros(rows, bool),
           jnp.zeros(rows, jnp.float32), jnp.zeros(rows, jnp.int32), first[:, -1], out.past_key_values)

  def running(state):
    step, _, done, *_ = state
    return (step < bound) & ~jnp.all(done)

  def advance(state):
    step, tokens, done, total, lengths, logits, cache = state
    logits = jnp.where(suppress[None] | ((step == 0) & begin[None]), -jnp.inf, logits)
    if ngram:
      logits = jnp.where(_repeats(tokens, step, ngram, logits.shape[-1]), -jnp.inf, logits)
    logprobs = jax.nn.log_softmax(logits)
    token = jnp.where(done, eot, jnp.argmax(logprobs, axis=-1).astype(jnp.int32))
    total = total + jnp.where(done, 0.0, jnp.take_along_axis(logprobs, token[:, None], axis=-1)[:, 0])
    lengths = lengths + (~done & (token != eot))
    tokens = tokens.at[:, step].set(token)
    done = done | (token == eot)
    with hf.whisper_cached_cross_attention(cross_kv):
      out = model.decode(token[:, None], (encoder_output,), decoder_attention_mask=mask,
                         decoder_position_ids=jnp.full((rows, 1), prompt_len + step, jnp.int32),
                         past_key_values=cache, params=params)
    return step + 1, tokens, done, total, lengths, out.logits[:, -1].astype(jnp.float32), out.past_key_values

  _, tokens, _, total, lengths, _, _ = jax.lax.while_loop(running, advance, state)
  return tokens, lengths, total, no_speech_prob


def _repeats(tokens, step, n, vocab):
  """[B, vocab] True for each token that would repeat an n-gram already in the row's generated tokens."""
  rows, steps = tokens.shape
  starts = jnp.arange(steps)
  match = starts + n - 1 < step  # an earlier n-gram tokens[s : s + n] ends before this step
  for k in range(n - 1):  # its first n - 1 tokens equal the last n - 1 generated
    recent = jax.lax.dynamic_slice_in_dim(tokens, jnp.maximum(step - (n - 1) + k, 0), 1, axis=1)
    earlier = jnp.take(tokens, jnp.minimum(starts + k, steps - 1), axis=1)
    match = match & (earlier == recent) & (step >= n - 1)
  following = jnp.take(tokens, jnp.minimum(starts + n - 1, steps - 1), axis=1)
  banned = jnp.zeros((rows, vocab), jnp.int32)
  return banned.at[jnp.arange(rows)[:, None], following].max(match.astype(jnp.int32)) > 0


@functools.partial(jax.jit, static_argnums=0, static_argnames=("heads", "eot"))
def _cross_attention(model, params, encoder_output, sequences, *, heads, eot):
  """Cross-attention weights of the alignment heads [B, heads, T, 1500] and each position's probability of
  the next token among text tokens (CTranslate2's text_token_probs) [B, T]."""
  out = model.decode(sequences, (encoder_output,), output_attentions=True, params=params)
  weights = jnp.stack([out.cross_attentions[layer][:, head] for layer, head in heads], axis=1)
  weights = weights.astype(jnp.float32)  # [B, alignment heads, T, frames]
  text = jax.nn.softmax(out.logits[..., :eot].astype(jnp.float32), axis=-1)
  following = jnp.minimum(jnp.roll(sequences, -1, axis=1), eot - 1)
  probs = jnp.take_along_axis(text, following[..., None], axis=-1)[..., 0]
  return weights, probs
