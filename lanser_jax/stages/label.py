"""The label stage ("label"): transcripts -> weak emotion labels from the labeler (textual entailment or a
sentence encoder, lanser_jax/labelers/__init__.py), after the transcript filters of config.label.

Reads   <workdir>/asr/transcripts-*.jsonl, or with label.text_source="manifest" the manifest's own `text`
Writes  <workdir>/labels/labels-SSSSS-of-NNNNN.jsonl  {"utt_id", "text", "label", "label_index", "scores",
                                                      "margin"}
        <workdir>/labels/label_names.json, errors-*.jsonl, summary-*.json   (see pieces.py; each summary
                                                  records the provenance: labeler, model, versions, devices)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from lanser_jax.corpora import manifests
from lanser_jax.utils import progress as progress_lib
from lanser_jax.stages import manifest, pieces, provenance, stage


def manifest_texts(path: str, piece: int, num_pieces: int) -> list[dict]:
  """label.text_source='manifest': the corpus's own transcripts (row.text, byte for byte) of one piece, in
  the shape of ASR transcripts; a row without text (or a bad line) carries the reason it is rejected."""
  items = []
  for row in pieces.Manifest(path).piece(piece, num_pieces):
    if isinstance(row, manifests.RejectedRow):
      items.append({"utt_id": row.utt_id, "text": None, "rejected": row.reason})
    elif not isinstance(row.text, str) or not row.text.strip():
      items.append({"utt_id": row.utt_id, "text": row.text,
                    "rejected": "no text in the manifest (label.text_source='manifest')"})
    else:
      items.append({"utt_id": row.utt_id, "text": row.text, "language": row.extra.get("language")})
  return items


def transcript_problem(t: dict, lc) -> str | None:
  """Why a transcript makes no weak label (None: it does); thresholds from config.label."""
  text = (t.get("text") or "").strip()
  if not text:
    return "empty transcript"
  if len(text.split()) < lc.min_words:
    return f"transcript too short: {len(text.split())} words < min_words {lc.min_words}"
  if len(text) < lc.min_chars:
    return f"transcript too short: {len(text)} characters < min_chars {lc.min_chars}"
  if t.get("no_speech_prob", 0.0) > lc.max_no_speech_prob:
    return (f"high no-speech probability: {t['no_speech_prob']:.3f} > max_no_speech_prob "
            f"{lc.max_no_speech_prob}")
  if t.get("avg_logprob", 0.0) < lc.min_avg_logprob:
    return f"low ASR confidence: avg_logprob {t['avg_logprob']:.3f} < {lc.min_avg_logprob}"
  if lc.languages and t.get("language") not in lc.languages:
    return f"language {t.get('language')!r} not in label.languages {list(lc.languages)}"
  if t.get("compression_ratio", 0.0) > lc.max_compression_ratio:
    return (f"repetitive transcript: compression ratio {t['compression_ratio']:.2f} > "
            f"{lc.max_compression_ratio}")
  return None


@dataclasses.dataclass
class _State:
  config: Any
  workdir: str
  out_dir: str
  asr_dir: str
  text_source: str
  labeler: Any  # built on the first piece that needs it (None until then)


class WeakLabelStage(stage.Stage):
  name = "label"
  inputs = ("asr",)  # or the manifest, with label.text_source="manifest"

  def folder(self, config) -> str:
    return "labels"

  def setup(self, config, workdir, log, labeler=None, **models):
    text_source = config.label.get("text_source", "asr")
    if text_source not in ("asr", "manifest"):
      raise ValueError(f"label.text_source={text_source!r}: expected 'asr' or 'manifest'")
    return _State(config, workdir, self.out_dir(config, workdir), os.path.join(workdir, "asr"), text_source,
                  labeler)

  def run_piece(self, state, piece, num_pieces):
    from lanser_jax import labelers
    lc = state.config.label
    src = os.path.join(state.asr_dir, pieces.piece_name("transcripts", piece, num_pieces, "jsonl"))
    if state.text_source == "asr" and not pieces.piece_done(state.asr_dir, piece, num_pieces):
      raise FileNotFoundError(f"{src}: ASR piece {piece} is not complete; run --stage=asr first")
    if state.labeler is None:
      state.labeler = labelers.build_labeler(state.config.labeler)
    labeler = state.labeler
    names = list(labeler.label_names)
    pieces.write_json(os.path.join(state.out_dir, "label_names.json"), names)
    items = (list(pieces.read_jsonl(src)) if state.text_source == "asr"
             else manifest_texts(manifest.manifest_path(state.workdir), piece, num_pieces))
    per_language = hasattr(labeler, "language_problem")  # templates by detected language
    progress = progress_lib.Progress(f"label {piece}/{num_pieces}", len(items))
    with pieces.PieceOutputs(state.out_dir, "label", piece, num_pieces) as out:
      labels_f = out.open_jsonl("labels")
      keep = []
      for t in items:
        why = t.pop("rejected", None) or transcript_problem(t, lc) or (
            labeler.language_problem(t.get("language")) if per_language else None)
        if why:
          out.error(t["utt_id"], why, t.get("text"))
        else:
          keep.append(t)
      progress.update(len(items) - len(keep))
      for i in range(0, len(keep), lc.batch_size):
        chunk = keep[i:i + lc.batch_size]
        texts = [t["text"] for t in chunk]
        scores = np.asarray(labeler.score(texts, [t.get("language") for t in chunk]) if per_language
                            else labeler.score(texts), np.float32)
        index, margin = labelers.weak_labels(scores)
        for t, s, k, m in zip(chunk, scores, index, margin):
          labels_f.write(pieces.json_line({
              "utt_id": t["utt_id"], "text": t["text"], "label": names[int(k)],
              "label_index": int(k), "scores": [round(float(x), 6) for x in s],
              "margin": float(m)}))
        progress.update(len(chunk))
      progress.close()
      out.commit({"in": len(items), "written": len(keep),
                  "provenance": provenance.label(state.config.labeler, labeler)})


STAGE = WeakLabelStage()
