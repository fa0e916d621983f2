"""The one module that opens, lists, copies, renames, deletes and atomically writes files, for local paths,
`gs://` and `s3://` URLs alike.

Local paths go to the operating system; URLs go to fsspec (`gcsfs`, `s3fs`: the `cloud` extra), with the
listing cache off, because several processes share a bucket workdir and one of them waiting for another's
done-marker must see it appear. Orbax reaches buckets through etils `epath` (metadata) and TensorStore
(arrays); `_configure_clients` points all of them at the same place:

- `EPATH_USE_TF=false` (unless set): with TensorFlow installed, `epath` would use `tf.io.gfile` for `gs://`,
  whose endpoint is compiled in (it cannot be pointed at an emulator) and which has no `s3://`; with it,
  `epath` uses fsspec like this module.
- `STORAGE_EMULATOR_HOST` (the standard variable of the Google clients, also read by gcsfs) set means a GCS
  emulator: then TensorStore (`TENSORSTORE_GCS_HTTP_URL`) and ArrayRecord's C++ reader
  (`CLOUD_STORAGE_EMULATOR_ENDPOINT`) get the same endpoint unless set, and gcsfs's experimental
  zonal/hierarchical-bucket support is switched off (`GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`): it probes
  every bucket over gRPC first, which an emulator does not answer, and waits 60 s per bucket.
- S3 endpoint and region come from `AWS_ENDPOINT_URL` / `AWS_DEFAULT_REGION` (botocore reads them).

Credentials are never handled here: the clients find them in the standard environment (Application Default
Credentials, AWS variables or profile). Nothing is written but the caller's bytes.

Atomicity. A reader must never see half a file. On a local disk a file is written under a temporary name and
renamed. An object store has no rename, but an object appears whole or not at all when its upload finishes,
so `atomic_write`, `write_*` and `copy` write the object directly (a local temporary file, uploaded in one
piece on success, never on an exception); callers that write several objects write their done-marker last.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import glob as _glob
import io
import json
import os
import shutil
import tempfile
from typing import Any, Iterable, Iterator

URL_SCHEMES = ("gs", "s3")


def _configure_clients():
  os.environ.setdefault("EPATH_USE_TF", "false")
  emulator = os.environ.get("STORAGE_EMULATOR_HOST")
  if emulator:
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", emulator)
    os.environ.setdefault("CLOUD_STORAGE_EMULATOR_ENDPOINT", emulator)


_configure_clients()


def is_url(path: Any) -> bool:
  """True for `gs://...` and `s3://...` (the object stores this project writes to)."""
  return isinstance(path, str) and path.split("://", 1)[0] in URL_SCHEMES and "://" in path


def scheme(path: str) -> str:
  return path.split("://", 1)[0] if is_url(path) else "file"


def absolute(path: str) -> str:
  """An absolute local path, or the URL unchanged (`os.path.abspath` would make `gs://b` `<cwd>/gs:/b`)."""
  return path if is_url(path) else os.path.abspath(path)


def join(*parts: str) -> str:
  return os.path.join(*parts)  # "/"-joining is right for URLs too on the POSIX systems this runs on


@functools.lru_cache(maxsize=None)
def _fs(protocol: str):
  try:
    import fsspec
    return fsspec.filesystem(protocol, use_listings_cache=False)
  except ImportError as e:
    raise ImportError(f"{protocol}:// paths need the cloud extra: pip install 'lanser-jax[cloud]' "
                      f"(gcsfs, s3fs); {e}") from e


def fs(path: str):
  """The fsspec filesystem of a URL."""
  return _fs(scheme(path))


def _key(path: str) -> str:
  return path.split("://", 1)[1]


# ---------------------------------------------------------------------------------------------------
# Queries.


def exists(path: str) -> bool:
  if not is_url(path):
    return os.path.exists(path)
  return fs(path).exists(_key(path))


def isdir(path: str) -> bool:
  if not is_url(path):
    return os.path.isdir(path)
  return fs(path).isdir(_key(path))


def isfile(path: str) -> bool:
  if not is_url(path):
    return os.path.isfile(path)
  return fs(path).isfile(_key(path))


def getsize(path: str) -> int:
  if not is_url(path):
    return os.path.getsize(path)
  return int(fs(path).size(_key(path)))


def glob(pattern: str, recursive: bool = False) -> list[str]:
  """Sorted matches of a shell pattern (`**` with recursive=True), as full paths or URLs."""
  if not is_url(pattern):
    return sorted(_glob.glob(pattern, recursive=recursive))
  prefix = scheme(pattern) + "://"
  return sorted(prefix + p for p in fs(pattern).glob(_key(pattern)))


def listdir(path: str) -> list[str]:
  """Sorted names (not paths) in a folder; [] for a folder that does not exist."""
  if not is_url(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []
  try:
    entries = fs(path).ls(_key(path).rstrip("/"), detail=False)
  except FileNotFoundError:
    return []
  return sorted({os.path.basename(p.rstrip("/")) for p in entries} - {""})


def walk_files(root: str) -> list[str]:
  """Every file under a folder, sorted, as full paths or URLs."""
  if not is_url(root):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)
  prefix = scheme(root) + "://"
  return sorted(prefix + p for p in fs(root).find(_key(root).rstrip("/")))


# ---------------------------------------------------------------------------------------------------
# Reading and writing.


def open(path: str, mode: str = "r", encoding: str | None = "utf-8", **kwargs):  # noqa: A001
  """A file object. For URLs, "w" uploads on close (interrupted = no object) and "a" is not supported:
  objects cannot be appended to (use `AppendFile`)."""
  binary = "b" in mode
  if not is_url(path):
    return _builtin_open(path, mode, encoding=None if binary else encoding, **kwargs)
  if "a" in mode or "+" in mode:
    raise ValueError(f"{path}: mode {mode!r}: objects in a bucket cannot be appended to or updated")
  return fs(path).open(_key(path), mode, **({} if binary else {"encoding": encoding}))


_builtin_open = builtins.open  # shadowed by `open` above


def read_bytes(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def read_text(path: str) -> str:
  return read_bytes(path).decode("utf-8")


def read_json(path: str) -> Any:
  return json.loads(read_bytes(path))


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", encoding: str = "utf-8", **kwargs) -> Iterator[Any]:
  """Writes a file that readers see whole or not at all; on an exception nothing is left behind.
  Local: a temporary name in the same folder, renamed over `path`. URL: the object, uploaded on success."""
  binary = "b" in mode
  if mode not in ("w", "wb"):
    raise ValueError(f"atomic_write: mode {mode!r}, expected 'w' or 'wb'")
  if is_url(path):  # a local file (any size), uploaded in one piece once complete
    d = tempfile.mkdtemp(prefix="lanser_upload_")
    local = os.path.join(d, os.path.basename(path))
    try:
      with _builtin_open(local, mode, encoding=None if binary else encoding, **kwargs) as f:
        yield f
      fs(path).put_file(local, _key(path))
    finally:
      shutil.rmtree(d, ignore_errors=True)
    return
  makedirs(os.path.dirname(os.path.abspath(path)))
  tmp = path + ".tmp"
  try:
    with _builtin_open(tmp, mode, encoding=None if binary else encoding, **kwargs) as f:
      yield f
    os.replace(tmp, path)
  except OSError as e:  # a full disk fails at the buffer's flush, with no file name: name it
    e.filename = e.filename or tmp
    raise
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_bytes(path: str, data: bytes):
  with atomic_write(path, "wb") as f:
    f.write(data)


def write_text(path: str, text: str):
  with atomic_write(path, "w") as f:
    f.write(text)


def write_json(path: str, obj: Any, indent: int | None = 1):
  write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False))


class AppendFile:
  """A text file that grows by lines and keeps what a killed process wrote before its last `flush`.
  Local: an ordinary file in append mode. URL: objects cannot be appended to, so the existing object is
  read once and the whole text is uploaded again at each flush (meant for small logs such as
  metrics.jsonl; every upload replaces the object whole, so a reader never sees a torn line)."""

  def __init__(self, path: str):
    self.path = path
    if is_url(path):
      self._text = io.StringIO()
      if exists(path):
        self._text.write(read_text(path))
      self._f = None
    else:
      makedirs(os.path.dirname(os.path.abspath(path)))
      self._f = _builtin_open(path, "a", encoding="utf-8")

  def write(self, text: str):
    (self._f or self._text).write(text)

  def flush(self):
    if self._f is not None:
      try:
        self._f.flush()
      except OSError as e:  # a full disk: name the file (the flush does not)
        e.filename = e.filename or self.path
        raise
    else:
      with fs(self.path).open(_key(self.path), "wb") as f:
        f.write(self._text.getvalue().encode("utf-8"))

  def close(self):
    if self._f is not None:
      self._f.close()
    else:
      self.flush()


def append_jsonl(path: str, records: Iterable[dict[str, Any]]):
  """Appends JSON lines (one call = one flush)."""
  f = AppendFile(path)
  for r in records:
    f.write(json.dumps(r, ensure_ascii=False) + "\n")
  f.close()


def read_jsonl(path: str) -> list[dict[str, Any]]:
  return [json.loads(line) for line in read_text(path).splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------
# Folders, copies, renames, deletions.


def makedirs(path: str):
  """Local: `mkdir -p`. URL: nothing (object stores have no folders; a key's prefix is its folder)."""
  if path and not is_url(path):
    os.makedirs(path, exist_ok=True)


def copy(src: str, dst: str):
  """Copies one file between any two of local disk, gs:// and s3://; `dst` appears whole."""
  if not is_url(src) and not is_url(dst):
    makedirs(os.path.dirname(os.path.abspath(dst)))
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
  elif is_url(dst) and not is_url(src):
    fs(dst).put_file(src, _key(dst))  # one upload: the object exists only once it is complete
  elif is_url(src) and not is_url(dst):
    makedirs(os.path.dirname(os.path.abspath(dst)))
    tmp = dst + ".tmp"
    fs(src).get_file(_key(src), tmp)
    os.replace(tmp, dst)
  else:
    write_bytes(dst, read_bytes(src))


def copy_tree(src: str, dst: str):
  """Copies every file under `src` to the same relative path under `dst`."""
  for path in walk_files(src):
    copy(path, join(dst, os.path.relpath(path if not is_url(src) else _key(path),
                                         src if not is_url(src) else _key(src).rstrip("/"))))


def rename(src: str, dst: str):
  """Local: an atomic rename (replacing `dst`). URL: copy, then delete (object stores cannot rename, so
  callers on buckets do not rely on it for atomicity)."""
  if not is_url(src) and not is_url(dst):
    os.replace(src, dst)
    return
  copy(src, dst)
  remove(src)


def remove(path: str, missing_ok: bool = True):
  try:
    if is_url(path):
      if not missing_ok and not exists(path):  # S3 deletes a missing key without complaint
        raise FileNotFoundError(path)
      fs(path).rm_file(_key(path))
    else:
      os.remove(path)
  except FileNotFoundError:
    if not missing_ok:
      raise


def rmtree(path: str):
  if is_url(path):
    if fs(path).exists(_key(path)):
      fs(path).rm(_key(path).rstrip("/"), recursive=True)
  elif os.path.isdir(path):
    shutil.rmtree(path)


class StagedFiles:
  """Files written under temporary names and moved into place together by `commit`, in the order they were
  named; `abort` removes them, and those a failed or finished `commit` moved already (a piece whose later
  files could not be written leaves none under a final name). A local path's temporary name is `<path>.tmp` beside it (the rename is
  atomic); a bucket path's is in one local folder (the object is uploaded whole at commit). Every
  temp-then-rename write of several files goes through here; a single file goes through `atomic_write`."""

  def __init__(self, prefix: str = "lanser_staged_"):
    self._prefix, self._staging = prefix, None
    self._tmp: dict[str, str] = {}  # final path -> temporary path
    self._moved: list[str] = []  # final paths that commit has written

  def path(self, final: str) -> str:
    """The temporary path to write `final` under (for writers that take a path, e.g. ArrayRecord's)."""
    if final not in self._tmp:
      if is_url(final):
        if self._staging is None:
          self._staging = local_staging_dir(self._prefix)
        self._tmp[final] = os.path.join(self._staging, os.path.basename(final))
      else:
        makedirs(os.path.dirname(os.path.abspath(final)))
        self._tmp[final] = final + ".tmp"
    return self._tmp[final]

  def open(self, final: str, mode: str = "w", encoding: str | None = "utf-8"):
    return open(self.path(final), mode, encoding=encoding)

  def commit(self):
    """Moves every written temporary file to its final path (to a bucket: one upload each)."""
    for final, tmp in self._tmp.items():
      if exists(tmp):
        rename(tmp, final)
        self._moved.append(final)
    self._cleanup()

  def abort(self):
    for tmp in self._tmp.values():
      remove(tmp)
    for final in self._moved:
      remove(final)
    self._moved = []
    self._cleanup()

  def _cleanup(self):
    if self._staging:
      rmtree(self._staging)
      self._staging = None


def local_staging_dir(prefix: str) -> str:
  """A new local temporary folder (outside the working directory) for files that a library can only write
  to a local disk before they are copied to a bucket."""
  return tempfile.mkdtemp(prefix=prefix)

