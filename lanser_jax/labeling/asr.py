"""The ASR stage: manifest audio -> Whisper transcripts (faster-whisper / CTranslate2).

Reads   <workdir>/manifest/manifest.jsonl
Writes  <workdir>/asr/transcripts-SSSSS-of-NNNNN.jsonl  {"utt_id", "text", "language", "avg_logprob",
                                                         "no_speech_prob", "compression_ratio",
                                                         "duration"}
        <workdir>/asr/errors-*.jsonl, summary-*.json    (see stages.py)

Utterances are batched *across* the manifest: faster-whisper's BatchedInferencePipeline batches the
30 s chunks of one long recording, while corpora like People's Speech are millions of short clips.
Each batch is one encoder call and one beam-search call over all its clips (every clip is padded to
Whisper's 30 s window anyway, so clips of any length batch together). Audio decoding runs on
threads ahead of the model. Clips over 30 s (only when audio.max_seconds > 30) take faster-whisper's
sequential long-form path.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from lanser_jax import audio as audio_lib
from lanser_jax.labeling import stages

WHISPER_SECONDS = 30.0


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

  @classmethod
  def from_config(cls, config) -> "AsrOptions":
    return cls(**{f.name: type(f.default)(config[f.name]) for f in dataclasses.fields(cls)
                  if f.name in config})


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

  def transcribe(self, waves: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens
    short = [i for i, w in enumerate(waves) if len(w) <= WHISPER_SECONDS * 16000]
    results: list[dict[str, Any] | None] = [None] * len(waves)
    for i in set(range(len(waves))) - set(short):
      results[i] = self._transcribe_long(waves[i])
    if short:
      feats = np.stack([pad_or_trim(self.model.feature_extractor(waves[i])[..., :-1])
                        for i in short])
      encoder_output = self.model.encode(feats)
      languages = self._languages(encoder_output, len(short))
      tokenizers = [self._tokenizer(lang) for lang in languages]
      prompts = [self.model.get_prompt(t, [], without_timestamps=True) for t in tokenizers]
      outs = self.model.model.generate(
          encoder_output, prompts, beam_size=self.options.beam_size, patience=1,
          length_penalty=1, max_length=self.model.max_length, suppress_blank=True,
          suppress_tokens=get_suppressed_tokens(tokenizers[0], [-1]), return_scores=True,
          return_no_speech_prob=True)
      for i, lang, tok, out in zip(short, languages, tokenizers, outs):
        tokens = [t for t in out.sequences_ids[0] if t < tok.eot]
        text = tok.decode(tokens).strip()
        # As faster-whisper: the score is length-normalised; avg over tokens plus end-of-text.
        avg_logprob = out.scores[0] * len(out.sequences_ids[0]) / (len(out.sequences_ids[0]) + 1)
        results[i] = {"text": text, "language": lang, "avg_logprob": float(avg_logprob),
                      "no_speech_prob": float(out.no_speech_prob),
                      "compression_ratio": float(get_compression_ratio(text)) if text else 0.0}
    return results

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


# ---------------------------------------------------------------------------------------------------
# The stage.


def run_stage(config, workdir: str, process: tuple[int, int], transcriber=None, log=print):
  """Transcribes this process's pieces of the manifest; returns the pieces it ran."""
  options = AsrOptions.from_config(config.asr)
  audio_options = audio_lib.AudioOptions.from_config(config.audio)
  manifest = stages.Manifest(os.path.join(workdir, "manifest", "manifest.jsonl"))
  stage_dir = os.path.join(workdir, "asr")
  num_pieces = config.output_shards

  def do_piece(piece: int):
    nonlocal transcriber
    if transcriber is None:
      transcriber = Transcriber(options)
    start, stop = stages.piece_range(len(manifest), piece, num_pieces)
    progress = stages.Progress(f"asr {piece}/{num_pieces}", stop - start)
    with stages.PieceOutputs(stage_dir, "asr", piece, num_pieces) as out:
      transcripts = out.open_jsonl("transcripts")
      counts = {"in": 0, "written": 0, "audio_seconds": 0.0, "cropped": 0, "cropped_seconds": 0.0}
      batch = []

      def flush():
        for (row, clip), res in zip(batch, transcriber.transcribe([c.samples for _, c in batch])):
          transcripts.write(stages.json_line(dict(utt_id=row.utt_id, **res,
                                                  duration=round(clip.duration, 3))))
          counts["written"] += 1
        progress.update(len(batch))
        batch.clear()

      decode = lambda row: audio_lib.load(row.audio, row.offset, row.duration, audio_options)
      rows = manifest.piece(piece, num_pieces)
      for row, clip in stages.map_ahead(stages.per_row(decode), rows, options.decode_workers):
        counts["in"] += 1
        if isinstance(clip, Exception):
          out.error(row.utt_id, stages.reason(clip, (audio_lib.AudioError,)), stages.source_of(row))
          progress.update()
          continue
        counts["audio_seconds"] += clip.duration
        counts["cropped"] += int(clip.cropped)
        counts["cropped_seconds"] += clip.cropped_seconds
        batch.append((row, clip))
        if len(batch) >= options.batch_size:
          flush()
      if batch:
        flush()
      progress.close()
      out.commit(counts)

  return stages.run_pieces("asr", stage_dir, num_pieces, process, do_piece, log)

