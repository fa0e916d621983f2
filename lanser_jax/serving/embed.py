r"""Pooled embeddings (and class probabilities) of every utterance of a manifest, from a trained run.

  lanser-embed --workdir=workdirs/pretrain --manifest=manifest.jsonl --output=emb.npz \
      [--errors=emb.npz.errors.jsonl] [--batch_size=32] [--step=best|latest|N] [--overwrite]
  (or python -m lanser_jax.serving.embed ...)

--output ending in .npz: arrays utt_id [N] (str), embedding float32 [N, dim], probabilities float32
[N, classes], label_names [classes], each row's own true_label, speaker and split [N] (str, "" where the
row has none), and seconds / cropped_seconds float32 [N] (what was embedded, and what --max_seconds cut:
0 without it, NaN where the container does not give the length; read with np.load(path), no pickle). Any
other name: JSON lines {"utt_id", "embedding", "label" (predicted), "probability", "true_label", "speaker",
"split", "seconds", "cropped_seconds" (null when unknown)}. --manifest is the shared manifest format
(lanser_jax/corpora/manifests.py; offset/duration are honoured) or a CSV list as labelling reads it
(lanser_jax/corpora/generic.py: header, audio/path, label, speaker, split, ...). An utterance that cannot be
used is listed in the errors file ({"utt_id", "stage", "source", "reason"}) and the run goes on. Outputs are
written under a temporary name and renamed at the end; a rerun with a finished output skips the work.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Iterator, Sequence

from absl import app, flags
import numpy as np

from lanser_jax.utils import cli, fileio

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_WORKDIR = flags.DEFINE_string("workdir", None, "The training workdir (or a checkpoint step folder).",
                               flag_values=FLAGS)
_MANIFEST = flags.DEFINE_string("manifest", None, "Manifest JSONL or CSV list (as lanser-label reads it).",
                                flag_values=FLAGS)
_OUTPUT = flags.DEFINE_string("output", None, "*.npz, or JSON lines for any other name.", flag_values=FLAGS)
_ERRORS = flags.DEFINE_string("errors", None, "Errors JSONL (default: <output>.errors.jsonl).", flag_values=FLAGS)
_STEP = flags.DEFINE_string("step", None, "best (default; else latest), latest, or a step number.",
                            flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Windows per model call.", flag_values=FLAGS)
_MAX_SECONDS = flags.DEFINE_float("max_seconds", None, "Embed only the first S seconds of each utterance "
                                   "(stderr names each one cut); default: whole (long ones streamed).",
                                   flag_values=FLAGS)
_DECODE_WORKERS = flags.DEFINE_integer("decode_workers", 2, "Threads decoding ahead of the model.",
                                       flag_values=FLAGS)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Redo the work although --output exists.", flag_values=FLAGS)
flags.mark_flags_as_required(["workdir", "manifest", "output"], flag_values=FLAGS)


class ManifestLineError(ValueError):
  """A manifest line that is not a valid row; listed in the errors file."""


def read_rows(path: str) -> Iterator[tuple[str, object]]:
  """(utt_id or 'line N', Row or ManifestLineError) per non-empty line: a bad line never stops the run."""
  from lanser_jax.corpora import generic, manifests
  seen = set()
  for row in generic.read_utterances(path):
    if isinstance(row, manifests.RejectedRow):
      yield row.utt_id, ManifestLineError(f"{row.source}: not a manifest row ({row.reason})")
    elif row.utt_id in seen:
      yield row.utt_id, ManifestLineError(f"{path}: duplicate utt_id {row.utt_id!r} (an earlier line "
                                          "has it)")
    else:
      seen.add(row.utt_id)
      yield row.utt_id, row


def count_lines(path: str) -> int:
  """Utterance lines of a manifest or list (a CSV's header is not one)."""
  with fileio.open(path, encoding="utf-8") as f:
    n = sum(1 for line in f if line.strip())
  return n - 1 if path.lower().endswith(".csv") and n else n


class Outputs:
  """The output file (npz collected in memory, JSON lines streamed) and the errors file, both renamed
  into place by `commit` only."""

  def __init__(self, output: str, errors: str, label_names: Sequence[str]):
    self.output, self.errors, self.label_names = output, errors, list(label_names)
    self.npz = output.endswith(".npz")
    # Temporary names beside the outputs, or in a local folder for outputs in a bucket (uploaded at commit);
    # the errors file is named first, so the output, renamed last, means a finished run.
    self._staged = fileio.StagedFiles("lanser_embed_")
    self._errors_f = self._staged.open(errors, "w", encoding="utf-8")
    self._out_f = None if self.npz else self._staged.open(output, "w", encoding="utf-8")
    self.utt_ids, self.embeddings, self.probabilities, self.seconds = [], [], [], []
    self.rows = {"true_label": [], "speaker": [], "split": []}  # each row's own, beside its embedding
    self.written = self.failed = 0

  def add(self, utt_id: str, embedding: np.ndarray, prediction, row=None, seconds: float = float("nan"),
          cropped_seconds: float | None = 0.0):
    """cropped_seconds: what --max_seconds cut (None: the rest, of unknown length)."""
    self.written += 1
    given = {"true_label": getattr(row, "label", None) or "", "speaker": getattr(row, "speaker", "") or "",
             "split": getattr(row, "split", None) or ""}
    if self.npz:
      self.utt_ids.append(utt_id)
      self.embeddings.append(embedding)
      self.probabilities.append(prediction.probabilities)
      self.seconds.append((seconds, np.nan if cropped_seconds is None else cropped_seconds))
      for k, v in given.items():
        self.rows[k].append(str(v))
    else:
      self._out_f.write(json.dumps({"utt_id": utt_id, "embedding": [float(x) for x in embedding],
                                    "label": prediction.label,
                                    "probability": round(prediction.probability, 6), **given,
                                    "seconds": round(seconds, 3),
                                    "cropped_seconds": None if cropped_seconds is None else round(cropped_seconds, 3)},
                                   ensure_ascii=False) + "\n")

  def error(self, utt_id: str, source, reason: str):
    self.failed += 1
    self._errors_f.write(json.dumps({"utt_id": utt_id, "stage": "embed", "source": source,
                                     "reason": reason}, ensure_ascii=False) + "\n")

  def commit(self, dim: int):
    self._errors_f.close()
    if self.npz:
      emb = np.stack(self.embeddings) if self.embeddings else np.zeros((0, dim), np.float32)
      probs = (np.stack(self.probabilities) if self.probabilities
               else np.zeros((0, len(self.label_names)), np.float32))
      seconds = np.asarray(self.seconds, np.float32).reshape(-1, 2)
      with self._staged.open(self.output, "wb", encoding=None) as f:  # a file object: np.savez would add .npz
        np.savez(f, utt_id=np.asarray(self.utt_ids, dtype=str), embedding=emb.astype(np.float32),
                 probabilities=probs.astype(np.float32), label_names=np.asarray(self.label_names, dtype=str),
                 seconds=seconds[:, 0], cropped_seconds=seconds[:, 1],
                 **{k: np.asarray(v, dtype=str) for k, v in self.rows.items()})
    else:
      self._out_f.close()
    self._staged.commit()


def embed_manifest(clf, manifest: str, output: str, errors: str, chunk: int = 64,
                   decode_workers: int = 2) -> dict:
  """Embeds every row; returns {"written", "failed", "dim"}."""
  from lanser_jax.audio import decode
  from lanser_jax.utils import prefetch
  from lanser_jax.utils import progress as progress_lib

  def features_of(item):
    utt_id, row = item
    if isinstance(row, Exception):
      raise row
    return clf.read_clip(row.audio, row.offset, row.duration)  # whole; a long one is streamed at flush

  clf.require_audio_front_end()  # fail before any work when the run has no audio front end
  outputs = Outputs(output, errors, clf.label_names)
  progress = progress_lib.Progress("embed", count_lines(manifest), stream=sys.stderr)
  dim = 0
  batch = []

  def flush():
    nonlocal dim
    good = [i for i, (_, _, m) in enumerate(batch) if not isinstance(m, Exception)]
    for i, result in zip(good, clf.forward_each([batch[i][2] for i in good])):
      utt_id, row, clip = batch[i]
      if isinstance(result, Exception):  # a long utterance, streamed, that failed after its start
        batch[i] = (utt_id, row, result)
        continue
      if clip.cropped_seconds != 0.0:
        cut = "the rest (length unknown)" if clip.cropped_seconds is None else f"{clip.cropped_seconds:.1f} s"
        cli.log(f"cut: {utt_id}: embedded the first {clip.seconds:.1f} s; {cut} cut by --max_seconds")
      logits, emb = result
      dim = emb.shape[0]
      outputs.add(utt_id, emb, clf.predictions_from_logits(logits[None])[0], row, clip.seconds,
                  clip.cropped_seconds)
    for utt_id, row, m in batch:
      if isinstance(m, Exception):
        outputs.error(utt_id, getattr(row, "audio", None),
                      prefetch.describe_error(m, (decode.AudioError, ManifestLineError)))
    progress.update(len(batch))
    batch.clear()

  for (utt_id, row), mel in prefetch.map_ahead(features_of, read_rows(manifest), decode_workers):
    batch.append((utt_id, row, mel))
    if len(batch) >= chunk:
      flush()
  flush()
  progress.close()
  outputs.commit(dim)
  return {"written": outputs.written, "failed": outputs.failed, "dim": dim}


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}: the utterances come from --manifest")
  output = _OUTPUT.value
  errors = _ERRORS.value or output + ".errors.jsonl"
  if fileio.exists(output) and not _OVERWRITE.value:
    cli.log(f"{output} exists: skipped (pass --overwrite to redo it)")
    return 0
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  from lanser_jax.serving import classifier
  classifier.quiet_orbax()
  clf = classifier.load(_WORKDIR.value, _STEP.value, batch_size=_BATCH_SIZE.value, max_seconds=_MAX_SECONDS.value)
  cli.log(f"model {clf.config.model.name} step {clf.step} from {clf.state_path}")
  from lanser_jax.corpora import manifests
  try:
    counts = embed_manifest(clf, _MANIFEST.value, output, errors, decode_workers=_DECODE_WORKERS.value)
  except manifests.CorpusError as e:  # a list without an audio column: one line, no traceback
    cli.log(f"error: {e}")
    return 1
  cli.log(f"{counts['written']} embedded (dim {counts['dim']}), {counts['failed']} failed -> {output}"
          + (f"; reasons in {errors}" if counts["failed"] else ""))
  return 0 if counts["written"] > 0 else 1


def run():
  """The `lanser-embed` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
