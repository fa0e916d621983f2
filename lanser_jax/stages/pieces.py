"""The piece machinery every offline stage shares: pieces of the manifest, which process does which, the
per-piece outputs and their done-markers (summaries), the merge, and reading a manifest piece by piece.

Names: a *process* is one of the hosts/jobs sharing a run (--num_processes, --process_index); a *piece* is
one contiguous part of a stage's input, with its own output files (config.num_pieces of them, fixed for a
workdir); a *shard file* is an ArrayRecord file of the features stage (one per split and piece).

Each stage cuts its input (the manifest's lines, in order) into `num_pieces` contiguous pieces
and writes one set of output files per piece into `<workdir>/<stage>/`:

  <name>-SSSSS-of-NNNNN.<ext>        the outputs (transcripts, labels, feature shards ...)
  errors-SSSSS-of-NNNNN.jsonl        {"utt_id", "stage", "source", "reason"} per rejected utterance
  summary-SSSSS-of-NNNNN.json        counts; written LAST, so it marks the piece as complete

Every file is written under `<name>.tmp` and renamed when the piece is complete: a killed job leaves
only .tmp files, which the rerun overwrites, and a rerun skips pieces whose summary exists. In a bucket
workdir (gs://, s3://) the temporary files are local and `commit` uploads each object whole, the summary
last, so a killed job leaves nothing in the bucket but whole pieces. Process
i of N does the pieces j with j % N == i, so results never depend on how many hosts ran them.
Pieces are contiguous (not strided) so that rows of one parquet row group stay in one piece.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Iterable

import numpy as np

from lanser_jax.input_pipeline import records
from lanser_jax.utils import faults, fileio, prefetch


def piece_name(prefix: str, piece: int, num_pieces: int, ext: str) -> str:
  return f"{prefix}-{piece:05d}-of-{num_pieces:05d}.{ext}"


def piece_range(num_items: int, piece: int, num_pieces: int) -> tuple[int, int]:
  """Contiguous, balanced [start, stop) of piece `piece`."""
  return num_items * piece // num_pieces, num_items * (piece + 1) // num_pieces


# ---------------------------------------------------------------------------------------------------
# Which process am I?


def resolve_process(num_processes: int | None = None, process_index: int | None = None,
                    env=os.environ) -> tuple[int, int]:
  """(index, count) of this process: flags first, then a SLURM job array, then a Kubernetes Indexed Job
  (JOB_COMPLETION_INDEX, which Kubernetes sets, and JOB_COMPLETIONS, which the pod template sets to the Job's
  spec.completions: Kubernetes passes no count), then one process.

  `main.py --jax_distributed` passes jax.process_index()/process_count() in as the flags.
  """
  if num_processes:
    index = int(process_index or 0)
    if not 0 <= index < num_processes:
      raise ValueError(f"--process_index={index} is outside [0, --num_processes={num_processes})")
    return index, int(num_processes)
  if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
    count = int(env["SLURM_ARRAY_TASK_COUNT"])
    index = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
    if not 0 <= index < count:
      raise ValueError(f"SLURM_ARRAY_TASK_ID gives index {index}, outside [0, {count}); "
                       "use a contiguous array such as --array=0-{count-1}")
    return index, count
  if "JOB_COMPLETION_INDEX" in env:  # a Kubernetes Indexed Job (launch/k8s_label_indexed_job.yaml)
    if not env.get("JOB_COMPLETIONS"):
      raise ValueError("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but JOB_COMPLETIONS is not: set "
                       "JOB_COMPLETIONS in the pod template to the Job's spec.completions, or pass --num_processes")
    count, index = int(env["JOB_COMPLETIONS"]), int(env["JOB_COMPLETION_INDEX"])
    if not 0 <= index < count:
      raise ValueError(f"JOB_COMPLETION_INDEX={index} is outside [0, JOB_COMPLETIONS={count}); set "
                       "JOB_COMPLETIONS to the Job's spec.completions")
    return index, count
  return 0, 1


def my_pieces(num_pieces: int, process: tuple[int, int]) -> list[int]:
  index, count = process
  return [j for j in range(num_pieces) if j % count == index]


# ---------------------------------------------------------------------------------------------------
# Atomic per-piece outputs.


class PieceOutputs:
  """Opens the temporary files of one piece; `commit(summary)` renames them all, summary last.

  Use as a context manager: an exception removes the temporary files and re-raises.
  """

  def __init__(self, stage_dir: str, stage: str, piece: int, num_pieces: int):
    fileio.makedirs(stage_dir)
    self.stage_dir, self.stage, self.piece, self.num_pieces = stage_dir, stage, piece, num_pieces
    self._staged = fileio.StagedFiles("lanser_piece_")
    self._files = []
    self.errors = self.open_jsonl("errors")
    self.num_errors = 0
    self.reasons: dict[str, int] = {}

  def path(self, prefix: str, ext: str) -> str:
    return os.path.join(self.stage_dir, piece_name(prefix, self.piece, self.num_pieces, ext))

  def tmp_path(self, prefix: str, ext: str) -> str:
    """A temporary path that `commit` renames; for files written by other code (ShardWriter)."""
    return self._staged.path(self.path(prefix, ext))

  def open_jsonl(self, prefix: str):
    f = fileio.open(self.tmp_path(prefix, "jsonl"), "w", encoding="utf-8")
    self._files.append(f)
    return f

  def error(self, utt_id: str, reason: str, source: str | None = None):
    self.errors.write(json.dumps({"utt_id": utt_id, "stage": self.stage, "source": source,
                                  "reason": reason}, ensure_ascii=False) + "\n")
    self.num_errors += 1
    kind = reason.split(":")[0][:60]
    self.reasons[kind] = self.reasons.get(kind, 0) + 1

  def _close(self):
    for f in self._files:
      try:
        f.close()
      except OSError as e:  # a full disk fails at the buffer's flush, with no file name: name it
        e.filename = e.filename or getattr(f, "name", None)
        raise

  def commit(self, summary: dict[str, Any]):
    self._close()
    self._staged.commit()  # to a bucket: one upload per object
    summary = dict(summary, stage=self.stage, piece=self.piece, num_pieces=self.num_pieces,
                   rejected=self.num_errors, reasons=self.reasons)
    if summary["in"] != summary["written"] + summary["rejected"]:
      raise RuntimeError(f"{self.stage} piece {self.piece}: in={summary['in']} != written="
                         f"{summary['written']} + rejected={summary['rejected']}")
    write_json(self.path("summary", "json"), summary)

  def abort(self):
    for f in self._files:
      try:
        f.close()
      except OSError:  # the write that failed fails again at close; the files are removed below
        pass
    self._staged.abort()

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    if exc_type is not None:
      self.abort()


def piece_done(stage_dir: str, piece: int, num_pieces: int) -> bool:
  return fileio.exists(os.path.join(stage_dir, piece_name("summary", piece, num_pieces, "json")))


def run_pieces(stage: str, stage_dir: str, num_pieces: int, process: tuple[int, int],
               do_piece: Callable[[int], None], log=print) -> list[int]:
  """Runs `do_piece` on this process's unfinished pieces; returns the pieces it ran."""
  ran = []
  mine = my_pieces(num_pieces, process)
  for piece in mine:
    if piece_done(stage_dir, piece, num_pieces):
      log(f"[{stage}] piece {piece}/{num_pieces}: already complete, skipped")
      continue
    log(f"[{stage}] piece {piece}/{num_pieces}: starting")
    try:
      do_piece(piece)
    except Exception as e:
      if faults.describe(e) is not None:  # a fault (full disk, forbidden storage): say what is kept
        done = sum(piece_done(stage_dir, j, num_pieces) for j in range(num_pieces))
        faults.note_safe(e, f"{done} of {num_pieces} pieces of the {stage} stage are complete in {stage_dir}; "
                            f"piece {piece} was not written (its temporary files are removed)")
      raise
    ran.append(piece)
  return ran


def wait_for_pieces(stage_dir: str, num_pieces: int, timeout: float = 0.0, poll: float = 10.0,
                    log=print) -> bool:
  """True once every piece of a stage is complete; waits up to `timeout` s (0: no waiting)."""
  deadline = time.monotonic() + timeout
  while True:
    missing = [j for j in range(num_pieces) if not piece_done(stage_dir, j, num_pieces)]
    if not missing:
      return True
    if time.monotonic() >= deadline:
      return False
    log(f"waiting for {len(missing)} pieces of {stage_dir} (first: {missing[0]})")
    time.sleep(poll)


def merge_stage(stage_dir: str, num_pieces: int) -> dict[str, Any]:
  """Joins the pieces' errors into errors.jsonl and their counts into summary.json (with the pieces'
  provenance, provenance.py)."""
  from lanser_jax.stages import provenance
  total: dict[str, Any] = {"in": 0, "written": 0, "rejected": 0, "reasons": {}}
  summaries = []
  for j in range(num_pieces):
    s = read_json(os.path.join(stage_dir, piece_name("summary", j, num_pieces, "json")))
    summaries.append(s)
    for k, v in s["reasons"].items():
      total["reasons"][k] = total["reasons"].get(k, 0) + v
    for k, v in s.items():  # every count sums over pieces
      if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("piece",
                                                                               "num_pieces"):
        total[k] = total.get(k, 0) + v
  total["stage"], total["num_pieces"] = s["stage"], num_pieces
  where = provenance.merged(summaries)
  if where is not None:
    total["provenance"] = where
  concat_files(fileio.glob(os.path.join(stage_dir, "errors-*-of-*.jsonl")),
               os.path.join(stage_dir, "errors.jsonl"))
  write_json(os.path.join(stage_dir, "summary.json"), total)
  return total


# ---------------------------------------------------------------------------------------------------
# Small file helpers.


write_json, read_json = records.write_json, records.read_json


def read_jsonl(path: str) -> Iterable[dict[str, Any]]:
  with fileio.open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        yield json.loads(line)


def concat_files(paths: list[str], out: str):
  with fileio.atomic_write(out, "wb") as dst:
    for p in paths:
      dst.write(fileio.read_bytes(p))


def line_offsets(path: str) -> np.ndarray:
  """Byte offset of every non-empty line, so that a piece seeks to its lines without parsing
  the lines before it (manifests can hold millions of lines)."""
  offsets, pos = [], 0
  with fileio.open(path, "rb") as f:
    for line in f:
      if line.strip():
        offsets.append(pos)
      pos += len(line)
  return np.asarray(offsets, np.int64)


def read_lines(path: str, offsets: np.ndarray, start: int, stop: int) -> Iterable[bytes]:
  """Lines [start, stop) of a file whose line offsets are `offsets`, as bytes (the parser decodes them, so a
  line that is not UTF-8 is rejected on its own)."""
  if start >= stop:
    return
  with fileio.open(path, "rb") as f:
    f.seek(int(offsets[start]))
    n = 0
    while n < stop - start:
      line = f.readline()
      if not line:
        break
      if line.strip():
        n += 1
        yield line


class Manifest:
  """Random access to the pieces of a manifest JSONL (see lanser_jax/corpora/manifests.py)."""

  def __init__(self, path: str):
    if not fileio.exists(path):
      raise FileNotFoundError(f"{path}: no manifest; run --stage=manifest first")
    self.path = path
    self.dir = os.path.dirname(fileio.absolute(path))
    self.offsets = line_offsets(path)

  def __len__(self) -> int:
    return len(self.offsets)

  def piece(self, piece: int, num_pieces: int):
    """Rows of one piece; a malformed line comes back as a RejectedRow so it gets counted."""
    from lanser_jax.corpora import manifests
    start, stop = piece_range(len(self), piece, num_pieces)
    for i, line in enumerate(read_lines(self.path, self.offsets, start, stop), start):
      where = f"{self.path}:line {i + 1}"
      try:
        yield manifests.parse_line(line, where, self.dir)
      except manifests.ManifestError as e:
        yield manifests.RejectedRow(where, where, f"bad manifest line: {e}")


def json_line(obj: Any) -> str:
  return json.dumps(obj, ensure_ascii=False) + "\n"


class NothingSurvived(RuntimeError):
  """Every utterance was rejected: there is nothing to train on (the summaries are written)."""


def crop_note(stage: str, summary: dict[str, Any], max_seconds: float) -> str | None:
  """A warning line when a stage cropped audio: the seconds beyond audio.max_seconds are not used."""
  if not summary.get("cropped"):
    return None
  return (f"[{stage}] {summary['cropped']} utterances were cropped to audio.max_seconds={max_seconds:g}: "
          f"{summary.get('cropped_seconds', 0.0):.1f} s of audio not used; to keep long recordings, "
          "cut them with the adapter's segment_seconds (docs/labelling.md)")


class Rejected(ValueError):
  """An input the stage cannot use; the message is the reason for errors.jsonl."""


def per_row(fn: Callable) -> Callable:
  """Wraps a per-row function for `prefetch.map_ahead`: a RejectedRow from the manifest reader turns into
  its `Rejected` error instead of reaching `fn`."""
  from lanser_jax.corpora import manifests

  def call(row):
    if isinstance(row, manifests.RejectedRow):
      raise Rejected(row.reason)
    return fn(row)
  return call


def reason(e: Exception, expected: tuple = ()) -> str:
  """The errors.jsonl reason: our own errors speak for themselves, others get their type."""
  return prefetch.describe_error(e, (Rejected,) + tuple(expected))


def source_of(row) -> str | None:
  return getattr(row, "audio", None) or getattr(row, "source", None)


def decoded_rows(decode: Callable, rows: Iterable, workers: int, counts: dict, out, progress,
                 expected: tuple = ()):
  """(row, decode(row)) for every row that decodes, in order, decoded `workers` ahead; each row counts in
  `counts["in"]`, and one that fails is listed in the piece's errors with its reason and its progress step."""
  for row, item in prefetch.map_ahead(per_row(decode), rows, workers):
    counts["in"] += 1
    if isinstance(item, Exception):
      out.error(row.utt_id, reason(item, expected), source_of(row))
      progress.update()
      continue
    yield row, item
