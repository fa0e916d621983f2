"""Batched Whisper transcription (faster-whisper / CTranslate2): clips -> text and the figures the label
filters read; the ASR stage that runs it over a manifest is lanser_jax/stages/asr.py.

Utterances are batched *across* the manifest: faster-whisper's BatchedInferencePipeline batches the
30 s chunks of one long recording, while corpora like People's Speech are millions of short clips.
Each batch is one encoder call and one beam-search call over all its clips (every clip is padded to
Whisper's 30 s window anyway, so clips of any length batch together). Audio decoding runs on
threads ahead of the model. Clips over 30 s (only when audio.max_seconds > 30) take faster-whisper's
sequential long-form path.

With asr.packing=on (the default) consecutive short utterances share a window instead: see packing.py
for how each gets its own words back, and `Transcriber.transcribe_packed` for how its figures are made.

Loops: Whisper can decode a short clip into a loop ("you can't do it, you can't do it, ..." for a 2.4 s
sentence), which costs up to 224 tokens of decoding and reaches the labels as nonsense. So a window's
generation is bounded by its audio (`token_bound`: MAX_TOKENS_PER_SECOND per second of audio plus
MIN_TOKENS), and a clip whose text is repetitive (gzip compression ratio over COMPRESSION_RATIO_THRESHOLD,
faster-whisper's `compression_ratio_threshold`) or that reached its bound is decoded again alone, as
faster-whisper's own `transcribe` retries such a segment. faster-whisper retries by sampling at rising
temperatures; CTranslate2's sampling cannot be restarted from a seed within a process
(`ctranslate2.set_random_seed` seeds it once), so a sampled retry would depend on what the process decoded
before, and a resumed or multi-host run would label differently. The retry here is deterministic instead:
beam search (FALLBACK_BEAM_SIZE) that may not repeat any FALLBACK_NO_REPEAT_NGRAM-gram, so it cannot loop.
If the retry is repetitive too, the less repetitive of the two is kept. Like faster-whisper's
fallbacks, the retry of an unintelligible clip often comes back fluent but improbable (avg_logprob below
the label stage's min_avg_logprob, which then rejects it); a low avg_logprob alone triggers no retry.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from lanser_jax.utils import options
from lanser_jax.labelers import packing

WHISPER_SECONDS = 30.0
HOP_LENGTH = 160  # samples per log-mel frame (every Whisper)
BACKENDS = ("faster_whisper", "jax")  # asr.backend: CTranslate2, or Flax Whisper on the JAX devices (whisper_jax.py)
# What packing reports in the stage summary: utterances given back from a shared window; alone in a window
# because the next did not fit; fallbacks (transcribed alone) for being over 30 s, for words that could not be
# placed unambiguously (or none at all), for figures a label filter could reject on, and for repetitive text
# (a window that reached its token bound, or an utterance whose own words are repetitive).
PACKING_COUNTS = ("packed", "alone", "fallback_long", "fallback_unaligned", "fallback_unsure",
                  "fallback_repetitive")
# The repetition guard's counts, in the stage summary: clips decoded again (repetitive text or cut at their
# bound), and those whose retry was repetitive too (the label filter's max_compression_ratio may reject them).
GUARD_COUNTS = ("retried_repetitive", "still_repetitive")

MAX_TOKENS_PER_SECOND = 12.0  # about twice the token rate of fast English speech (6 words/s)
MIN_TOKENS = 16  # a short clip still gets room for a few words and punctuation
COMPRESSION_RATIO_THRESHOLD = 2.4  # faster-whisper's; also label.max_compression_ratio's default
FALLBACK_BEAM_SIZE = 5  # faster-whisper's default beam
FALLBACK_NO_REPEAT_NGRAM = 3  # a retry repeats no 3-gram of tokens: "you can't do it, you can't" cannot happen


def token_bound(num_samples: int, sample_rate: int = 16000) -> int:
  """The most text tokens a window of `num_samples` audio may generate (Whisper's 448 at most)."""
  return min(MIN_TOKENS + int(np.ceil(MAX_TOKENS_PER_SECOND * num_samples / sample_rate)), 224)


def is_repetitive(result: dict[str, Any]) -> bool:
  """What sends a clip to the repetition guard's retry: repetitive text, or generation cut at its bound."""
  return result["compression_ratio"] > COMPRESSION_RATIO_THRESHOLD or result.get("_bounded", False)


@dataclasses.dataclass(frozen=True)
class AsrOptions:
  model: str = "large-v3"  # a faster-whisper model name or a local CTranslate2 folder
  device: str = "auto"
  compute_type: str = "default"
  cpu_threads: int = 0
  batch_size: int = 16
  beam_size: int = 5
  language: str = ""  # "" detects per utterance (multilingual models); "en" for *.en models
  decode_workers: int = 2
  packing: str = "on"  # "on": short utterances share 30 s windows (packing.py); "off": one per window
  backend: str = "faster_whisper"  # or "jax": Flax Whisper, batch sharded over the local devices

  def __post_init__(self):
    if self.packing not in ("on", "off"):
      raise ValueError(f"asr.packing={self.packing!r}: must be 'on' or 'off'")
    if self.backend not in BACKENDS:
      raise ValueError(f"asr.backend={self.backend!r}: must be one of {BACKENDS}")

  @classmethod
  def from_config(cls, config, **overrides) -> "AsrOptions":
    return options.from_config(cls, config, **overrides)


def build_transcriber(options: AsrOptions) -> "Transcriber":
  """The transcriber of asr.backend: faster-whisper's (`Transcriber`) or JAX's (whisper_jax.JaxTranscriber)."""
  if options.backend == "jax":
    from lanser_jax.labelers import whisper_jax
    return whisper_jax.JaxTranscriber(options)
  return Transcriber(options)


class Transcriber:
  """Batched Whisper: list of 16 kHz float32 clips -> list of result dicts.

  The backends differ in `_generate`, `_align`, `_languages`, `_tokenizer` and `_transcribe_long`; batching,
  packing and the repetition guard are written once, here.
  """

  def __init__(self, options: AsrOptions):
    from faster_whisper import WhisperModel
    self.options = options
    self.model = WhisperModel(options.model, device=options.device,
                              compute_type=options.compute_type, cpu_threads=options.cpu_threads)
    self._tokenizers = {}
    self.guard_counts = dict.fromkeys(GUARD_COUNTS, 0)  # since construction; the stage takes differences

  def _tokenizer(self, language: str):
    from faster_whisper.tokenizer import Tokenizer
    if language not in self._tokenizers:
      self._tokenizers[language] = Tokenizer(
          self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe",
          language=language)
    return self._tokenizers[language]

  def _languages(self, encoder_output, n: int) -> list[str]:
    if not self.model.model.is_multilingual:
      return ["en"] * n
    if self.options.language:
      return [self.options.language] * n
    return [langs[0][0].strip("<|>") for langs in self.model.model.detect_language(encoder_output)]

  def _generate(self, waves: Sequence[np.ndarray], retry: bool = False):
    """One encoder call and one beam search over clips of at most 30 s (each padded to 30 s), bounded by
    the longest clip's `token_bound`; `retry` searches as the repetition guard does."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.transcribe import get_suppressed_tokens
    feats = np.stack([pad_or_trim(self.model.feature_extractor(w)[..., :-1]) for w in waves])
    encoder_output = self.model.encode(feats)
    languages = self._languages(encoder_output, len(waves))
    tokenizers = [self._tokenizer(lang) for lang in languages]
    prompts = [self.model.get_prompt(t, [], without_timestamps=True) for t in tokenizers]
    bound = max(token_bound(len(w)) for w in waves)
    search = (dict(beam_size=max(self.options.beam_size, FALLBACK_BEAM_SIZE),
                   no_repeat_ngram_size=FALLBACK_NO_REPEAT_NGRAM) if retry else
              dict(beam_size=self.options.beam_size))
    # CTranslate2's Whisper generates at most max_length // 2 text tokens (as OpenAI Whisper's sample_len =
    # n_text_ctx // 2: measured, 448 -> 224, 48 -> 24), so the bound is doubled.
    outs = self.model.model.generate(
        encoder_output, prompts, patience=1, length_penalty=1,
        max_length=min(2 * bound, self.model.max_length), suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizers[0], [-1]), return_scores=True,
        return_no_speech_prob=True, **search)
    return encoder_output, languages, tokenizers, outs

  @staticmethod
  def _result(out, tok, language: str, bound: int) -> dict[str, Any]:
    """A clip's figures from its generation; tokens past its own `bound` are cut and marked `_bounded`."""
    from faster_whisper.transcribe import get_compression_ratio
    ids = out.sequences_ids[0]
    tokens = [t for t in ids if t < tok.eot]
    text = tok.decode(tokens[:bound]).strip()
    # As faster-whisper: the score is length-normalised; avg over tokens plus end-of-text.
    avg_logprob = out.scores[0] * len(ids) / (len(ids) + 1)
    return {"text": text, "language": language, "avg_logprob": float(avg_logprob),
            "no_speech_prob": float(out.no_speech_prob),
            "compression_ratio": float(get_compression_ratio(text)) if text else 0.0,
            "_bounded": len(tokens) >= bound}

  def transcribe(self, waves: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """One utterance per window (asr.packing=off, and every utterance packing gives back)."""
    short = [i for i, w in enumerate(waves) if len(w) <= WHISPER_SECONDS * 16000]
    results: list[dict[str, Any] | None] = [None] * len(waves)
    for i in set(range(len(waves))) - set(short):
      results[i] = self._transcribe_long(waves[i])
    if short:
      _, languages, tokenizers, outs = self._generate([waves[i] for i in short])
      for i, lang, tok, out in zip(short, languages, tokenizers, outs):
        res = self._result(out, tok, lang, token_bound(len(waves[i])))
        results[i] = self._retry(waves[i], res) if is_repetitive(res) else res
    for res in results:
      res.pop("_bounded", None)
    return results

  def _retry(self, wave: np.ndarray, first: dict[str, Any]) -> dict[str, Any]:
    """The repetition guard's deterministic second decode of one clip (see the module docstring)."""
    self.guard_counts["retried_repetitive"] += 1
    _, languages, tokenizers, outs = self._generate([wave], retry=True)
    res = self._result(outs[0], tokenizers[0], languages[0], token_bound(len(wave)))
    if not is_repetitive(res):
      return res
    self.guard_counts["still_repetitive"] += 1
    return min((res, first), key=lambda r: r["compression_ratio"])

  def transcribe_packed(self, waves: Sequence[np.ndarray], min_avg_logprob: float = -np.inf,
                        max_no_speech_prob: float = np.inf
                        ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Like `transcribe`, but consecutive clips share windows (packing.py); also returns counts.

    Each packed utterance's figures are its own where they can be: `text` and `compression_ratio`
    from its own tokens, `avg_logprob` the mean log-probability of its own tokens (from the alignment
    pass, which scores the decoded tokens in the window's context), `language` the window's (one
    language setting per piece). `no_speech_prob` is the window's: Whisper reads it before the first
    token, so it cannot be split; each packed utterance has at least one word placed in its own audio,
    which is the per-utterance evidence of speech. An utterance the label filters could reject on
    these figures (avg_logprob < `min_avg_logprob`, or a window no_speech_prob > `max_no_speech_prob`)
    is transcribed alone, so the filters decide on exactly what they would see unpacked.
    """
    stats = dict.fromkeys(PACKING_COUNTS, 0)
    results: list[dict[str, Any] | None] = [None] * len(waves)
    alone: list[int] = []
    windows = []
    for window in packing.plan_windows([len(w) for w in waves]):
      if len(window) > 1:
        windows.append(window)
      else:  # the next clip did not fit, or the clip is longer than a window
        alone.extend(window)
        long = len(waves[window[0]]) > WHISPER_SECONDS * 16000
        stats["fallback_long" if long else "alone"] += 1
    if windows:
      packed = [packing.concatenate([waves[i] for i in window]) for window in windows]
      encoder_output, languages, tokenizers, outs = self._generate([audio for audio, _ in packed])
      tokens = [[t for t in out.sequences_ids[0] if t < tok.eot] for tok, out in zip(tokenizers, outs)]
      # A window that reached its own token bound may be looping: none of its words are trusted.
      bounds = [token_bound(len(audio)) for audio, _ in packed]
      looping = [len(toks) >= bound for toks, bound in zip(tokens, bounds)]
      tokens = [[] if loop else toks for toks, loop in zip(tokens, looping)]
      frames = [len(audio) // HOP_LENGTH for audio, _ in packed]
      alignments = self._align(encoder_output, tokenizers, tokens, frames)
      for k, window in enumerate(windows):
        if looping[k]:
          alone.extend(window)
          stats["fallback_repetitive"] += len(window)
          continue
        words = packing.words_from_alignment(tokenizers[k], tokens[k], alignments[k])
        for i, ids in zip(window, packing.assign_words(words, packed[k][1])):
          if ids is None:
            alone.append(i)
            stats["fallback_unaligned"] += 1
            continue
          res = self._packed_result([words[j] for j in ids], tokenizers[k], languages[k],
                                    outs[k].no_speech_prob)
          if is_repetitive(res):  # decoded alone, where the repetition guard retries it
            alone.append(i)
            stats["fallback_repetitive"] += 1
            continue
          if res["avg_logprob"] < min_avg_logprob or res["no_speech_prob"] > max_no_speech_prob:
            alone.append(i)
            stats["fallback_unsure"] += 1
            continue
          results[i] = res
          stats["packed"] += 1
    alone.sort()
    for start in range(0, len(alone), max(self.options.batch_size, 1)):
      chunk = alone[start:start + max(self.options.batch_size, 1)]
      for i, res in zip(chunk, self.transcribe([waves[i] for i in chunk])):
        results[i] = res
    return results, stats

  def _align(self, encoder_output, tokenizers, tokens, frames):
    """Cross-attention alignment of each window's decoded tokens; one call per start sequence."""
    out = [None] * len(tokens)  # an empty window has no alignment (and no words)
    groups: dict[tuple, list[int]] = {}
    for k, (tok, toks) in enumerate(zip(tokenizers, tokens)):
      if toks:  # ctranslate2 cannot align an empty sequence; such a window has no words anyway
        groups.setdefault(tuple(tok.sot_sequence), []).append(k)
    for sot, ks in groups.items():
      features = encoder_output
      if len(ks) < len(tokens):  # mixed languages (detected per window) or empty windows: a subset
        import ctranslate2
        host = encoder_output
        if getattr(host, "device", "cpu") != "cpu":
          host = host.to_device(ctranslate2.Device.cpu)
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(host)[ks]))
      results = self.model.model.align(features, list(sot), [tokens[k] for k in ks],
                                        [frames[k] for k in ks], median_filter_width=7)
      for k, r in zip(ks, results):
        out[k] = r
    return out

  @staticmethod
  def _packed_result(words, tokenizer, language: str, no_speech_prob: float) -> dict[str, Any]:
    from faster_whisper.transcribe import get_compression_ratio
    text = tokenizer.decode([t for w in words for t in w.tokens]).strip()
    logprobs = [p for w in words for p in w.logprobs]
    return {"text": text, "language": language,
            "avg_logprob": float(np.mean(logprobs)) if logprobs else 0.0,
            "no_speech_prob": float(no_speech_prob),
            "compression_ratio": float(get_compression_ratio(text)) if text else 0.0}

  def _transcribe_long(self, wave: np.ndarray) -> dict[str, Any]:
    from faster_whisper.transcribe import get_compression_ratio
    # faster-whisper's long-form path keeps its own temperature fallback (sampled; see the module docstring).
    segments, info = self.model.transcribe(
        wave, language=self.options.language or None, beam_size=self.options.beam_size,
        condition_on_previous_text=False, vad_filter=False)
    segments = list(segments)
    text = " ".join(s.text.strip() for s in segments).strip()
    return {"text": text, "language": info.language,
            "avg_logprob": float(np.mean([s.avg_logprob for s in segments])) if segments else 0.0,
            "no_speech_prob": float(np.mean([s.no_speech_prob for s in segments]))
            if segments else 1.0,
            "compression_ratio": float(get_compression_ratio(text)) if text else 0.0}
