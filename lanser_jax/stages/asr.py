"""The ASR stage ("asr"): manifest audio -> Whisper transcripts, one file per piece (Whisper itself is
lanser_jax/labelers/whisper.py).

Reads   <workdir>/manifest/manifest.jsonl + the audio it points to
Writes  <workdir>/asr/transcripts-SSSSS-of-NNNNN.jsonl  {"utt_id", "text", "language", "avg_logprob",
                                                         "no_speech_prob", "compression_ratio",
                                                         "duration"}
        <workdir>/asr/errors-*.jsonl, summary-*.json    (see pieces.py; each summary also counts the
                                                         repetition guard's retries and records the
                                                         provenance: model, compute type, versions, CPU)

Audio is decoded on threads ahead of the model; utterances are grouped across the manifest into batches of
asr.batch_size clips, or with asr.packing=on of asr.batch_size shared 30 s windows (`batches`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable

from lanser_jax.audio import decode as decode_lib
from lanser_jax.utils import progress as progress_lib
from lanser_jax.labelers import whisper
from lanser_jax.labelers import packing
from lanser_jax.stages import manifest, pieces, provenance, stage


def batches(items: Iterable, num_samples: Callable[[Any], int], batch_size: int, pack: bool):
  """Groups utterances for one `transcribe` call: `batch_size` of them, or packed, as many as fill
  `batch_size` windows (the clip that would open one more waits for the next batch)."""
  batch, windows = [], packing.WindowCounter()
  for item in items:
    if pack and windows.add(num_samples(item)) > batch_size:
      yield batch
      batch, windows = [], packing.WindowCounter()
      windows.add(num_samples(item))
    batch.append(item)
    if not pack and len(batch) >= batch_size:
      yield batch
      batch = []
  if batch:
    yield batch


@dataclasses.dataclass
class _State:
  config: Any
  options: whisper.AsrOptions
  audio_options: decode_lib.AudioOptions
  manifest: pieces.Manifest
  out_dir: str
  transcriber: Any  # built on the first piece that needs it (None until then)


class TranscribeStage(stage.Stage):
  name = "asr"
  inputs = ("manifest",)

  def setup(self, config, workdir, log, transcriber=None, **models):
    return _State(config, whisper.AsrOptions.from_config(config.asr),
                  decode_lib.AudioOptions.from_config(config.audio),
                  pieces.Manifest(manifest.manifest_path(workdir)), self.out_dir(config, workdir), transcriber)

  def run_piece(self, state, piece, num_pieces):
    config, options = state.config, state.options
    if state.transcriber is None:
      state.transcriber = whisper.build_transcriber(options)
    transcriber = state.transcriber
    # A transcriber without transcribe_packed (a test double) gets one utterance per window.
    pack = options.packing == "on" and hasattr(transcriber, "transcribe_packed")
    start, stop = pieces.piece_range(len(state.manifest), piece, num_pieces)
    progress = progress_lib.Progress(f"asr {piece}/{num_pieces}", stop - start)
    with pieces.PieceOutputs(state.out_dir, "asr", piece, num_pieces) as out:
      transcripts = out.open_jsonl("transcripts")
      counts = {"in": 0, "written": 0, "audio_seconds": 0.0, "cropped": 0, "cropped_seconds": 0.0}
      if pack:
        counts.update(dict.fromkeys(whisper.PACKING_COUNTS, 0))
      guard_before = dict(getattr(transcriber, "guard_counts", {}))

      def flush(batch):
        waves = [c.samples for _, c in batch]
        if pack:
          results, stats = transcriber.transcribe_packed(
              waves, config.label.min_avg_logprob, config.label.max_no_speech_prob)
          for k, v in stats.items():
            counts[k] = counts.get(k, 0) + v
        else:
          results = transcriber.transcribe(waves)
        for (row, clip), res in zip(batch, results):
          transcripts.write(pieces.json_line(dict(utt_id=row.utt_id, **res,
                                                  duration=round(clip.duration, 3))))
          counts["written"] += 1
        progress.update(len(batch))

      def decoded():
        decode = lambda row: decode_lib.load(row.audio, row.offset, row.duration, state.audio_options)
        rows = state.manifest.piece(piece, num_pieces)
        for row, clip in pieces.decoded_rows(decode, rows, options.decode_workers, counts, out, progress,
                                             (decode_lib.AudioError,)):
          counts["audio_seconds"] += clip.duration
          counts["cropped"] += int(clip.cropped)
          counts["cropped_seconds"] += clip.cropped_seconds
          yield row, clip

      for batch in batches(decoded(), lambda item: len(item[1].samples), options.batch_size, pack):
        flush(batch)
      progress.close()
      for k, v in getattr(transcriber, "guard_counts", {}).items():
        counts[k] = v - guard_before.get(k, 0)
      counts["provenance"] = provenance.asr(options, transcriber)
      out.commit(counts)


STAGE = TranscribeStage()
