"""The shared manifest format: one JSONL line per utterance, written by every corpus adapter.

A manifest row is a flat JSON object:

  utt_id    str, unique in the manifest
  audio     str, where the samples are. One of
              "path/to/file.wav"              any audio file soundfile or PyAV decodes (also video)
              "path/to/x.parquet#row=123"     row 123 (0-based, counted over the whole file) of the
                                              `audio` column (struct {bytes, path}) of a parquet file,
                                              as People's Speech ships on the HF hub
            Relative paths are relative to the manifest's folder; adapters write absolute paths.
  offset    float seconds or null (start inside the file)
  duration  float seconds or null (null: to the end)
  speaker   str ("" when unknown; adapters use the best grouping they have, e.g. source recording)
  label     str or null, the human emotion label
  text      str or null, the reference transcript when the corpus has one
  split     str or null
Extra keys are allowed and kept (e.g. "session", "source").

Adapters (lanser_jax/corpora/) yield `Row`s; `write_manifest` checks them and drops duplicates,
listing every dropped row in an errors file, so a bad corpus entry never stops a long scan.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from typing import Any, Iterable, Iterator

from lanser_jax.utils import fileio

REQUIRED_KEYS = ("utt_id", "audio", "offset", "duration", "speaker", "label", "text", "split")
_PARQUET_REF = re.compile(r"^(?P<path>.+\.parquet)#row=(?P<row>\d+)$")

# The one list of media file names the project reads (the folder adapters, predict/embed's folder inputs, the
# decoder in lanser_jax/audio/decode.py). Audio files soundfile (libsndfile) reads exactly and seekably:
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".aif", ".aiff", ".au")
# Audio in containers libsndfile does not read (PyAV or ffmpeg decode them):
CONTAINER_AUDIO_EXTENSIONS = (".opus", ".m4a", ".aac")
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS + CONTAINER_AUDIO_EXTENSIONS
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS


class ManifestError(ValueError):
  """A manifest line or file that does not match the format."""


class CorpusError(ValueError):
  """A corpus the stages cannot use as configured (wrong columns, labels outside the declared set, a
  protocol it cannot follow); the message is one line saying what is wrong and how to go on."""


@dataclasses.dataclass
class Row:
  utt_id: str
  audio: str
  offset: float | None = None
  duration: float | None = None
  speaker: str = ""
  label: str | None = None
  text: str | None = None
  split: str | None = None
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict[str, Any]:
    d = {k: getattr(self, k) for k in REQUIRED_KEYS}
    for k, v in self.extra.items():
      if k not in d:
        d[k] = v
    return d

  @classmethod
  def from_json(cls, d: dict[str, Any], where: str = "manifest") -> "Row":
    if not isinstance(d, dict):
      raise ManifestError(f"{where}: a manifest line must be a JSON object, got {type(d).__name__}")
    for key in ("utt_id", "audio"):
      if not isinstance(d.get(key), str) or not d[key]:
        raise ManifestError(f"{where}: {key!r} must be a non-empty string, got {d.get(key)!r}")
    for key in ("offset", "duration"):
      v = d.get(key)
      if v is not None and (not isinstance(v, (int, float)) or v < 0):
        raise ManifestError(f"{where}: {key!r} must be null or a non-negative number, got {v!r}")
    extra = {k: v for k, v in d.items() if k not in REQUIRED_KEYS}
    return cls(utt_id=d["utt_id"], audio=d["audio"],
               offset=None if d.get("offset") is None else float(d["offset"]),
               duration=None if d.get("duration") is None else float(d["duration"]),
               speaker=str(d.get("speaker") or ""), label=d.get("label"), text=d.get("text"),
               split=d.get("split"), extra=extra)


def parquet_ref(path: str, row: int) -> str:
  """The `audio` string that points at one row of a parquet file."""
  return f"{os.path.abspath(path)}#row={int(row)}"


def parse_parquet_ref(audio: str) -> tuple[str, int] | None:
  """(path, row) for a parquet reference, None for a plain file path."""
  m = _PARQUET_REF.match(audio)
  return (m["path"], int(m["row"])) if m else None


def resolve_audio(audio: str, manifest_dir: str) -> str:
  """Makes a relative `audio` path absolute against the manifest's folder (keeps any #row=)."""
  return audio if os.path.isabs(audio) else os.path.normpath(os.path.join(manifest_dir, audio))


def parse_line(line: str | bytes, where: str, manifest_dir: str | None = None) -> Row:
  """One manifest line (text, or the file's UTF-8 bytes) as a Row (audio made absolute against
  `manifest_dir` when given); a malformed line, undecodable bytes included, raises ManifestError naming
  `where`."""
  try:
    d = json.loads(line)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ManifestError(f"{where}: not JSON ({e})") from e
  row = Row.from_json(d, where)
  if manifest_dir is not None:
    row.audio = resolve_audio(row.audio, manifest_dir)
  return row


def read_manifest(path: str, resolve: bool = True, lenient: bool = False
                  ) -> Iterator[Row | RejectedRow]:
  """Streams rows. A malformed line raises ManifestError naming the file and line number, or, with
  `lenient`, comes back as a RejectedRow (utt_id "line N") so that a long job lists it and goes on."""
  manifest_dir = os.path.dirname(fileio.absolute(path)) if resolve else None
  with fileio.open(path, "rb") as f:  # bytes: a line that is not UTF-8 is one bad line, not a crash
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f"{path}:{lineno}"
      try:
        yield parse_line(line, where, manifest_dir)
      except ManifestError as e:
        if not lenient:
          raise
        yield RejectedRow(f"line {lineno}", where, f"bad manifest line: {e}")


def write_manifest(path: str, rows: Iterable[Row], errors_path: str | None = None,
                   progress=None) -> dict[str, Any]:
  """Writes rows (whole or not at all); returns counts. Duplicate ids and invalid rows are listed
  in `errors_path` rather than raised, so that one bad entry does not lose a long corpus scan."""
  seen: set[str] = set()
  counts = {"written": 0, "rejected": 0, "splits": {}, "labels": {}}
  # Both written whole or not at all (fileio.atomic_write), the errors first and the manifest last.
  with contextlib.ExitStack() as outputs:
    f = outputs.enter_context(fileio.atomic_write(path))
    err_f = outputs.enter_context(fileio.atomic_write(errors_path)) if errors_path else None
    for row in rows:
      if progress is not None:
        progress.update()
      if isinstance(row, RejectedRow):
        reason, key, source = row.reason, row.utt_id, row.source
      else:
        try:
          row = Row.from_json(row.to_json(), where=f"row {row.utt_id!r}")
          reason = f"duplicate utt_id {row.utt_id!r}" if row.utt_id in seen else None
        except ManifestError as e:
          reason = str(e)
        key, source = row.utt_id, row.audio
      if reason is not None:
        counts["rejected"] += 1
        if err_f:
          err_f.write(json.dumps({"utt_id": key, "stage": "manifest", "source": source,
                                  "reason": reason}) + "\n")
        continue
      seen.add(row.utt_id)
      f.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
      counts["written"] += 1
      counts["splits"][str(row.split)] = counts["splits"].get(str(row.split), 0) + 1
      counts["labels"][str(row.label)] = counts["labels"].get(str(row.label), 0) + 1
  return counts


@dataclasses.dataclass
class RejectedRow:
  """What an adapter yields for a corpus entry it cannot use, so it is counted and listed."""
  utt_id: str
  source: str
  reason: str
