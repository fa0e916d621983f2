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
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from lanser_jax.utils import options
from lanser_jax.labelers import packing

WHISPER_SECONDS = 30.0
# What packing reports in the stage summary: utterances given back from a shared window; alone in a window
# because the next did not fit; fallbacks (transcribed alone) for being over 30 s, for words that could not be
# placed unambiguously (or none at all), and for figures a label filter could reject on.
PACKING_COUNTS = ("packed", "alone", "fallback_long", "fallback_unaligned", "fallback_unsure")


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

  def __post_init__(self):
    if self.packing not in ("on", "off"):
      raise ValueError(f"asr.packing={self.packing!r}: must be 'on' or 'off'")

  @classmethod
  def from_config(cls, config, **overrides) -> "AsrOptions":
    return options.from_config(cls, config, **overrides)


class Transcriber:
  """Batched Whisper: list of 16 kHz float32 clips -> list of result dicts."""

  def __init__(self, options: AsrOptions):
    from faster_whisper import WhisperModel
    self.options = options
    self.model = WhisperModel(options.model, device=options.device,
                              compute_type=options.compute_type, cpu_threads=options.cpu_threads)
    self._tokenizers = {}

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

  def _generate(self, waves: Sequence[np.ndarray]):
    """One encoder call and one beam search over clips of at most 30 s (each padded to 30 s)."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.transcribe import get_suppressed_tokens
    feats = np.stack([pad_or_trim(self.model.feature_extractor(w)[..., :-1]) for w in waves])
    encoder_output = self.model.encode(feats)
    languages = self._languages(encoder_output, len(waves))
    tokenizers = [self._tokenizer(lang) for lang in languages]
    prompts = [self.model.get_prompt(t, [], without_timestamps=True) for t in tokenizers]
    outs = self.model.model.generate(
        encoder_output, prompts, beam_size=self.options.beam_size, patience=1,
        length_penalty=1, max_length=self.model.max_length, suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizers[0], [-1]), return_scores=True,
        return_no_speech_prob=True)
    return encoder_output, languages, tokenizers, outs

  def transcribe(self, waves: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """One utterance per window (asr.packing=off, and every utterance packing gives back)."""
    from faster_whisper.transcribe import get_compression_ratio
    short = [i for i, w in enumerate(waves) if len(w) <= WHISPER_SECONDS * 16000]
    results: list[dict[str, Any] | None] = [None] * len(waves)
    for i in set(range(len(waves))) - set(short):
      results[i] = self._transcribe_long(waves[i])
    if short:
      _, languages, tokenizers, outs = self._generate([waves[i] for i in short])
      for i, lang, tok, out in zip(short, languages, tokenizers, outs):
        tokens = [t for t in out.sequences_ids[0] if t < tok.eot]
        text = tok.decode(tokens).strip()
        # As faster-whisper: the score is length-normalised; avg over tokens plus end-of-text.
        avg_logprob = out.scores[0] * len(out.sequences_ids[0]) / (len(out.sequences_ids[0]) + 1)
        results[i] = {"text": text, "language": lang, "avg_logprob": float(avg_logprob),
                      "no_speech_prob": float(out.no_speech_prob),
                      "compression_ratio": float(get_compression_ratio(text)) if text else 0.0}
    return results

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
      frames = [len(audio) // self.model.feature_extractor.hop_length for audio, _ in packed]
      alignments = self._align(encoder_output, tokenizers, tokens, frames)
      for k, window in enumerate(windows):
        words = packing.words_from_alignment(tokenizers[k], tokens[k], alignments[k])
        for i, ids in zip(window, packing.assign_words(words, packed[k][1])):
          if ids is None:
            alone.append(i)
            stats["fallback_unaligned"] += 1
            continue
          res = self._packed_result([words[j] for j in ids], tokenizers[k], languages[k],
                                    outs[k].no_speech_prob)
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
