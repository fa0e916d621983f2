"""Corpora without a fixed layout: any folder of audio files, a CSV/JSONL list, Condensed Movies.

Long recordings (Condensed Movies clips run ~2 minutes) are split here into consecutive windows of
`segment_seconds` via offset/duration, so every window gets its own transcript and weak label; the
audio loader only crops, as a safety net, anything still longer than `audio.max_seconds`.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
from typing import Any, Iterator, Sequence

from lanser_jax.corpora import manifests

AUDIO_EXTENSIONS, VIDEO_EXTENSIONS = manifests.AUDIO_EXTENSIONS, manifests.VIDEO_EXTENSIONS


def probe_duration(path: str) -> float | None:
  """Seconds of audio in a file without decoding it; None when no reader knows the file."""
  try:
    import soundfile
    return soundfile.info(path).duration
  except Exception:
    pass
  try:
    import av
    with av.open(path, metadata_errors="ignore") as c:
      if c.streams.audio and c.streams.audio[0].duration is not None:
        s = c.streams.audio[0]
        return float(s.duration * s.time_base)
      return None if c.duration is None else c.duration / 1e6
  except Exception:
    return None


def _segments(row: manifests.Row, segment_seconds: float, min_seconds: float = 1.0):
  """Yields `row` cut into windows; the last window is kept if it has >= min_seconds."""
  if not segment_seconds:
    yield row
    return
  total = probe_duration(row.audio)
  if total is None:
    yield manifests.RejectedRow(row.utt_id, row.audio, "unreadable audio: cannot read duration")
    return
  n = max(1, math.ceil((total - min_seconds) / segment_seconds + 1e-9)) if total > min_seconds else 1
  for i in range(n):
    start = i * segment_seconds
    length = min(segment_seconds, total - start)
    yield manifests.Row(f"{row.utt_id}_{i:04d}", row.audio, offset=round(start, 3),
                        duration=round(length, 3), speaker=row.speaker, label=row.label,
                        text=None, split=row.split, extra=dict(row.extra, segment=i))


def folder_rows(root: str, extensions: Sequence[str] = AUDIO_EXTENSIONS, split: str | None = None,
                label_from_parent: bool = False, speaker_from_parent: bool = False,
                segment_seconds: float = 0.0) -> Iterator[manifests.Row | manifests.RejectedRow]:
  """Every audio file under `root`; utt_id is the relative path without extension.

  Every entry whose name has one of `extensions` becomes a row or a RejectedRow with the reason, so the
  manifest's counts add up to what is on disk: hidden names (a part of the path starting with '.', e.g.
  macOS `._x.wav` resource forks) are skipped by rule, dangling symlinks and entries that are no regular
  file (a directory named `y.wav`, a pipe) are listed too."""
  exts = tuple(e.lower() for e in extensions)
  entries = sorted(_walk(root))
  if not any(p.lower().endswith(exts) for p, _ in entries):
    raise FileNotFoundError(f"{root}: no files with extensions {list(exts)}")
  for path, hidden in entries:
    if not path.lower().endswith(exts):
      continue
    rel = os.path.splitext(os.path.relpath(path, root))[0].replace(os.sep, "/")
    why = _not_audio_file(path, hidden)
    if why:
      yield manifests.RejectedRow(rel, os.path.abspath(path), why)
      continue
    parent = os.path.basename(os.path.dirname(path))
    row = manifests.Row(rel, os.path.abspath(path), split=split,
                        label=parent if label_from_parent else None,
                        speaker=parent if speaker_from_parent else "")
    yield from _segments(row, segment_seconds)


def _walk(root: str) -> Iterator[tuple[str, bool]]:
  """(path, hidden) of every entry under `root`, following directory links once (no cycles)."""
  seen = set()
  for top, dirs, files in os.walk(root, followlinks=True):
    real = os.path.realpath(top)
    if real in seen:
      dirs[:] = []
      continue
    seen.add(real)
    hidden = any(part.startswith(".") for part in os.path.relpath(top, root).split(os.sep) if part != ".")
    for name in dirs + files:
      yield os.path.join(top, name), hidden or name.startswith(".")


def _not_audio_file(path: str, hidden: bool) -> str | None:
  """Why an entry with an audio extension is not read (None: it is a regular file to read)."""
  if hidden:
    return "hidden file skipped by rule: a name in its path starts with '.'"
  if os.path.islink(path) and not os.path.exists(path):
    return f"dangling symlink: points to {os.readlink(path)}, which does not exist"
  if os.path.isdir(path):
    return "not a regular file: a directory with an audio file's name"
  if not os.path.isfile(path):
    return "not a regular file (a pipe, socket or device)"
  return None


LIST_COLUMNS = ("audio", "label", "speaker", "split", "text", "utt_id", "offset", "duration")


def list_rows(path: str, split: str | None = None, columns: dict[str, str] | None = None
              ) -> Iterator[manifests.Row | manifests.RejectedRow]:
  """A CSV (with a header) or JSONL list; `audio` (or `path`) is required, the other LIST_COLUMNS optional.
  Relative audio paths are taken relative to the list file's folder. `columns` maps manifest keys to the
  list's own names ({"audio": "file", "label": "emotion"}). A list without an audio column stops the run
  with one line naming the columns it has and the ones expected."""
  base = os.path.dirname(os.path.abspath(path))
  if not os.path.isfile(path):
    raise manifests.CorpusError(f"{path}: no such list file (manifest.root names the CSV or JSONL list)")
  rename = {v: k for k, v in dict(columns or {}).items() if v}
  unknown = sorted(set(dict(columns or {})) - set(LIST_COLUMNS))
  if unknown:
    raise manifests.CorpusError(f"manifest.columns names {unknown}, which are no list columns; the keys are "
                                f"{list(LIST_COLUMNS)}")
  checked = False
  for where, d in _read_list(path):
    if "_bad" in d:
      yield manifests.RejectedRow(where, where, f"not JSON: {d['_bad']}")
      continue
    d = {rename.get(k, k): v for k, v in d.items()}
    if not checked:
      _check_columns(path, d, columns)
      checked = True
    audio = d.get("audio") or d.get("path")
    if not audio:
      yield manifests.RejectedRow(str(d.get("utt_id", where)), where, "no 'audio' value")
      continue
    audio = manifests.resolve_audio(str(audio), base)
    d = dict(d, audio=audio, utt_id=str(d.get("utt_id") or os.path.splitext(
        os.path.basename(audio.split("#")[0]))[0]))
    d.pop("path", None)
    for key in ("offset", "duration"):
      if d.get(key) in ("", None):
        d[key] = None
      else:
        try:
          d[key] = float(d[key])
        except ValueError:
          pass  # left as text: Row.from_json rejects it and names the bad value
    for key in ("label", "text", "split"):
      if d.get(key) == "":
        d[key] = None
    if split is not None and d.get("split") is None:
      d["split"] = split
    try:
      yield manifests.Row.from_json(d, where)
    except manifests.ManifestError as e:
      yield manifests.RejectedRow(d["utt_id"], where, str(e))


def read_utterances(path: str, lenient: bool = True) -> Iterator[manifests.Row | manifests.RejectedRow]:
  """The utterances of a manifest (JSONL) or of a CSV list as labelling reads it (header, columns, relative
  paths): what `embed` and the analysis take, so one list serves labelling, embedding and analysis."""
  if path.lower().endswith(".csv"):
    return list_rows(path)
  return manifests.read_manifest(path, lenient=lenient)


def _check_columns(path: str, first: dict[str, Any], columns) -> None:
  """One line when the list's first row has no audio column (a wrong header or a wrong `columns` map)."""
  if "audio" in first or "path" in first:
    return
  hint = (f" (after manifest.columns {dict(columns)})" if columns else
          "; map other names with manifest.columns (custom.py: columns=audio:file|label:emotion)")
  raise manifests.CorpusError(f"{path}: no 'audio' (or 'path') column; the list has {sorted(k for k in first if k)}, "
                              f"expected audio plus optional {list(LIST_COLUMNS[1:])}{hint}")


def _read_list(path: str) -> Iterator[tuple[str, dict[str, Any]]]:
  with open(path, encoding="utf-8-sig", newline="") as f:
    if path.lower().endswith((".jsonl", ".json")):
      for lineno, line in enumerate(f, 1):
        if line.strip():
          try:
            d = json.loads(line)
            yield f"{path}:{lineno}", d if isinstance(d, dict) else {"_bad": f"a {type(d).__name__}, not an object"}
          except json.JSONDecodeError as e:
            yield f"{path}:{lineno}", {"_bad": str(e)}
    else:
      for lineno, d in enumerate(csv.DictReader(f), 2):
        yield f"{path}:{lineno}", {(k or "").strip(): (v.strip() if isinstance(v, str) else v)
                                   for k, v in d.items() if k is not None}


def condensed_movies_rows(root: str, video_dir: str = "videos",
                          metadata: str = "metadata/clips.csv", segment_seconds: float = 10.0
                          ) -> Iterator[manifests.Row | manifests.RejectedRow]:
  """Condensed Movies: video clips named <videoid>.<ext> (any depth under `video_dir`) and an
  optional clips.csv with columns videoid, imdbid, clip_name, upload_year. The movie (imdbid)
  stands in for the speaker: it groups the voices, which keeps movies out of two splits."""
  meta = {}
  meta_path = os.path.join(root, metadata)
  if os.path.exists(meta_path):
    with open(meta_path, encoding="utf-8", newline="") as f:
      for d in csv.DictReader(f):
        if d.get("videoid"):
          meta[d["videoid"]] = d
  vdir = os.path.join(root, video_dir) if os.path.isdir(os.path.join(root, video_dir)) else root
  paths = sorted(p for p in glob.glob(os.path.join(vdir, "**", "*"), recursive=True)
                 if p.lower().endswith(VIDEO_EXTENSIONS + AUDIO_EXTENSIONS) and os.path.isfile(p))
  if not paths:
    raise FileNotFoundError(f"{vdir}: no video clips")
  for path in paths:
    vid = os.path.splitext(os.path.basename(path))[0]
    m = meta.get(vid, {})
    row = manifests.Row(vid, os.path.abspath(path), speaker=str(m.get("imdbid", "")),
                        extra={k: m[k] for k in ("imdbid", "clip_name", "upload_year") if k in m})
    yield from _segments(row, segment_seconds)
