r"""Classify audio files with a trained run: a table, CSV or JSON lines of labels and probabilities.

  lanser-predict --workdir=workdirs/iemocap clip.wav more_clips/ \
      [--format=table|csv|jsonl] [--output=FILE] [--batch_size=32] [--step=best|latest|N]
  (or python -m lanser_jax.serving.predict ...)

Folders are searched recursively for audio files. Every file is classified whole: one that is longer than
ten minutes is streamed through the model in bounded memory. --max_seconds=S classifies only the first S
seconds of each file instead; the `seconds` and `cropped_seconds` columns (CSV, JSON lines), the table's
last column and a line on stderr say what was cut. A file that cannot be decoded is reported with the reason
and the run goes on; the exit status is non-zero only when nothing could be classified.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import Iterable, Iterator, Sequence

from absl import app, flags

from lanser_jax.corpora import manifests
from lanser_jax.utils import cli, fileio

AUDIO_EXTENSIONS = manifests.MEDIA_EXTENSIONS  # audio and video files, one list for the whole project
FORMATS = ("table", "csv", "jsonl")

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_WORKDIR = flags.DEFINE_string("workdir", None, "The training workdir (or a checkpoint step folder).",
                               flag_values=FLAGS)
_STEP = flags.DEFINE_string("step", None, "best (default; else latest), latest, or a step number.",
                            flag_values=FLAGS)
_FORMAT = flags.DEFINE_enum("format", "table", FORMATS, "Output format.", flag_values=FLAGS)
_OUTPUT = flags.DEFINE_string("output", None, "File to write (default: stdout).", flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Windows per model call.", flag_values=FLAGS)
_MAX_SECONDS = flags.DEFINE_float("max_seconds", None, "Classify only the first S seconds of each file "
                                   "(the output says what was cut); default: whole files.", flag_values=FLAGS)
_DECODE_WORKERS = flags.DEFINE_integer("decode_workers", 2, "Threads decoding ahead of the model.",
                                       flag_values=FLAGS)
flags.mark_flags_as_required(["workdir"], flag_values=FLAGS)


def expand_inputs(paths: Sequence[str]) -> list[str]:
  """Files as given, and the audio files under given folders (sorted); missing paths are kept so that
  they are reported as failures rather than silently dropped."""
  out = []
  for p in paths:
    if os.path.isdir(p):
      found = []
      for root, dirs, files in os.walk(p):
        dirs.sort()
        found += [os.path.join(root, f) for f in files if f.lower().endswith(AUDIO_EXTENSIONS)]
      if not found:
        cli.log(f"warning: no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {p}")
      out += sorted(found)
    else:
      out.append(p)
  return out


def classify_files(clf, files: Sequence[str], chunk: int = 64, decode_workers: int = 2,
                   progress=None) -> Iterator[dict]:
  """One row per file, in order: {"file", "label", "probability", "top", "probabilities", "seconds",
  "cropped_seconds"} or {"file", "error"}. Decoding runs on threads ahead of the model; windows of `chunk`
  files at a time share the fixed-size batches; a file too long to decode at once is streamed whole
  (Classifier.forward_clips)."""
  from lanser_jax.audio import decode
  from lanser_jax.utils import prefetch

  def rows_of(batch):
    good = [m for _, m in batch if not isinstance(m, Exception)]
    results = iter(clf.forward_each(good))
    for f, m in batch:
      if not isinstance(m, Exception):
        clip, m = m, next(results)
      if isinstance(m, Exception):
        yield {"file": f, "error": prefetch.describe_error(m, (decode.AudioError, ValueError))}
      else:
        p = clf.predictions_from_logits(m[0][None])[0]
        yield {"file": f, "label": p.label, "probability": p.probability, "top": p.top(3),
               "probabilities": p.as_dict(), "seconds": clip.seconds, "cropped_seconds": clip.cropped_seconds}

  batch = []
  for f, mel in prefetch.map_ahead(clf.read_clip, files, decode_workers):
    batch.append((f, mel))
    if len(batch) >= chunk:
      yield from rows_of(batch)
      if progress:
        progress.update(len(batch))
      batch = []
  if batch:
    yield from rows_of(batch)
    if progress:
      progress.update(len(batch))


# ---------------------------------------------------------------------------------------------------
# Output formats.


def _top_text(top) -> str:
  return ", ".join(f"{name} {p:.3f}" for name, p in top)


def cut_text(r: dict) -> str:
  """'' for a file classified whole, else what --max_seconds cut."""
  cut = r.get("cropped_seconds", 0.0)
  if cut == 0.0:
    return ""
  if cut is None:
    return f"classified the first {r['seconds']:.1f} s; the rest (length unknown) cut by --max_seconds"
  return (f"classified the first {r['seconds']:.1f} s of {r['seconds'] + cut:.1f} s; {cut:.1f} s cut by "
          "--max_seconds")


def format_table(rows: Sequence[dict]) -> str:
  header = ("file", "label", "probability", "top 3")
  lines = [(r["file"], r["label"], f"{r['probability']:.3f}",
            _top_text(r["top"]) + (f"  [{cut_text(r)}]" if cut_text(r) else "")) if "error" not in r
           else (r["file"], "FAILED", "", r["error"]) for r in rows]
  widths = [max(len(header[i]), *(len(l[i]) for l in lines)) if lines else len(header[i])
            for i in range(3)]
  fmt = lambda cols: "  ".join(c.ljust(w) for c, w in zip(cols[:3], widths)) + "  " + cols[3]
  return "\n".join([fmt(header)] + [fmt(l) for l in lines]) + "\n"


def write_rows(rows: Iterable[dict], fmt: str, out, label_names: Sequence[str]) -> list[dict]:
  """Streams CSV/JSONL rows as they come (a table needs all rows for its widths); returns the rows."""
  seen = []
  writer = None
  if fmt == "csv":
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "label", "probability", "top3", *[f"p_{n}" for n in label_names], "seconds",
                     "cropped_seconds", "error"])
  for r in rows:
    seen.append(r)
    if fmt == "csv":
      if "error" in r:
        writer.writerow([r["file"], "", "", "", *[""] * len(label_names), "", "", r["error"]])
      else:
        cut = r.get("cropped_seconds", 0.0)
        writer.writerow([r["file"], r["label"], f"{r['probability']:.6f}", _top_text(r["top"]),
                         *[f"{r['probabilities'][n]:.6f}" for n in label_names], f"{r['seconds']:.3f}",
                         "unknown" if cut is None else f"{cut:.3f}", ""])
    elif fmt == "jsonl":
      d = dict(r)
      if "top" in d:
        d["probability"] = round(d["probability"], 6)
        d["top"] = [[n, round(p, 6)] for n, p in d["top"]]
        d["probabilities"] = {n: round(p, 6) for n, p in d["probabilities"].items()}
        d["seconds"] = round(d["seconds"], 3)
        d["cropped_seconds"] = None if d["cropped_seconds"] is None else round(d["cropped_seconds"], 3)
      out.write(json.dumps(d, ensure_ascii=False) + "\n")
    out.flush()
    if "error" not in r and cut_text(r):
      cli.log(f"cut: {r['file']}: {cut_text(r)}")
  if fmt == "table":
    out.write(format_table(seen))
  return seen


# ---------------------------------------------------------------------------------------------------
# Command line.


def main(argv: Sequence[str]) -> int:
  """Classifies the files and folders named after the flags (argv[1:])."""
  inputs = list(argv[1:])
  if not inputs:
    raise app.UsageError("name at least one audio file or folder after the flags")
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  from lanser_jax.serving import classifier
  classifier.quiet_orbax()
  from lanser_jax.utils import progress as progress_lib
  files = expand_inputs(inputs)
  clf = classifier.load(_WORKDIR.value, _STEP.value, batch_size=_BATCH_SIZE.value, max_seconds=_MAX_SECONDS.value)
  clf.require_audio_front_end()  # a run trained on non-audio features fails here, not once per file
  cli.log(f"model {clf.config.model.name} step {clf.step} from {clf.state_path}; {len(files)} files; "
      f"labels {list(clf.label_names)}")
  progress = progress_lib.Progress("predict", len(files), stream=sys.stderr) if len(files) > 1 else None
  rows_in = classify_files(clf, files, decode_workers=_DECODE_WORKERS.value, progress=progress)
  if _OUTPUT.value:
    with fileio.atomic_write(_OUTPUT.value) as out:  # appears when complete: never a partial output
      rows = write_rows(rows_in, _FORMAT.value, out, clf.label_names)
  else:
    rows = write_rows(rows_in, _FORMAT.value, sys.stdout, clf.label_names)
  if progress:
    progress.close()
  failed = [r for r in rows if "error" in r]
  for r in failed:
    cli.log(f"failed: {r['file']}: {r['error']}")
  ok = len(rows) - len(failed)
  cli.log(f"{ok} classified, {len(failed)} failed" + (f" -> {_OUTPUT.value}" if _OUTPUT.value else ""))
  return 0 if ok > 0 else 1


def run():
  """The `lanser-predict` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
