"""How every command ends on a fault: one line on stderr naming the fault, the path, what is safe and the
command that continues; the whole traceback only with --verbose.

A cluster throws the same few faults at every command: a full disk, read-only or forbidden storage, a
missing bucket, a data worker killed for memory, a peer process gone. Libraries report them from deep
inside (TensorStore's `RESOURCE_EXHAUSTED: Error writing ...`, ArrayRecord's `write() failed: No space left
on device`, botocore's `AccessDenied`), often several times over from their own threads. `describe(e)`
reads an exception chain and says which fault it is; code that knows what was kept attaches it to the
exception in flight (`note_safe`, an exception note); `cli.run` prints the line (`report`).

Errors that are not faults (a bug, a bad config) keep their traceback: a one-line summary would hide them.
`Fault` is for errors whose message already is the whole story.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import shutil
import signal
import sys
from typing import Iterator

_SAFE = "lanser-safe: "  # exception notes that say what was kept
_VERBOSE_HINT = "(--verbose shows the traceback)"


class Fault(RuntimeError):
  """An error whose message says what happened, where and what to do; printed as it is."""


class WorkerDied(Fault):
  """A data worker process of the input pipeline ended without being asked to."""


class PeerDied(Fault):
  """Another process of a multi-process job stopped."""


_ONE_LINE: list[type] = []


def one_line(cls: type) -> type:
  """Class decorator: errors of `cls` say what is wrong and what to do in their message (a corrupt shard,
  an unrestorable checkpoint), so a command prints that message as its line, as it prints a Fault's."""
  _ONE_LINE.append(cls)
  return cls


def note_safe(e: BaseException, text: str) -> None:
  """Attaches what is safe (complete, kept) to the exception in flight; `report` prints it."""
  if text and text not in safe_notes(e):
    e.add_note(_SAFE + text)


def safe_notes(e: BaseException) -> list[str]:
  notes = []
  for x in chain(e):
    notes += [n[len(_SAFE):] for n in getattr(x, "__notes__", ()) if n.startswith(_SAFE)]
  return notes


def chain(e: BaseException) -> Iterator[BaseException]:
  """The exception, its causes and contexts, and exception groups' members (each once)."""
  seen, todo = set(), [e]
  while todo:
    x = todo.pop(0)
    if x is None or id(x) in seen:
      continue
    seen.add(id(x))
    yield x
    todo += [x.__cause__, x.__context__, *getattr(x, "exceptions", ())]


# Storage faults, by errno and by the words the storage libraries use for them (TensorStore, ArrayRecord,
# fsspec/gcsfs/s3fs/botocore, google-cloud-storage).
_KINDS = (
    ("disk full", (errno.ENOSPC, errno.EDQUOT),
     r"No space left on device|RESOURCE_EXHAUSTED: Error writing|Disk quota exceeded"),
    ("read-only storage", (errno.EROFS,), r"Read-only file system"),
    # gcsfs says a missing bucket as FileNotFoundError(<upload URL of the bucket>): uploads 404 only then.
    ("missing bucket", (), r"NoSuchBucket|specified bucket does not exist|[Bb]ucket .{0,40}not (found|exist)|"
                           r"/upload/storage/v1/b/[\w.\-]+/o\b"),
    ("access denied", (errno.EACCES, errno.EPERM),
     r"Permission denied|PERMISSION_DENIED|AccessDenied|Access Denied|InvalidAccessKeyId|SignatureDoesNotMatch|"
     r"\b403 Forbidden|(HTTP|status|code)\W{0,3}403\b|\bForbidden\b|does not have storage\.\w+\.\w+ access"),
)
_ADVICE = {
    "disk full": "free space on {where} (or move the workdir to a larger disk)",
    "read-only storage": "make {where} writable (or choose another workdir)",
    "missing bucket": "create the bucket or correct the path",
    "access denied": "give this job's credentials access to {where} (check the credentials and the bucket's policy)",
}


def _path_of(e: BaseException) -> str | None:
  for x in chain(e):
    if isinstance(x, OSError) and x.filename:
      return str(x.filename)
  text = " ".join(str(x) for x in chain(e))
  gcs_upload = re.search(r"/upload/storage/v1/b/([\w.\-]+)/o\b", text)
  if gcs_upload:
    return f"gs://{gcs_upload.group(1)}"
  for pattern in (r"((?:gs|s3)://[^\s\"'`,;]+)", r"local file \"([^\"]+)\"", r"writing ([/\w.\-]+)",
                  r"[\"'](/[^\"']+)[\"']", r"(?<![\w/])(/[\w.\-]+(?:/[\w.\-]+)+)"):
    m = re.search(pattern, text)
    if m:
      return m.group(1)
  return None


def storage_fault(e: BaseException) -> tuple[str, str | None] | None:
  """(kind, path) when `e` (or what caused it) is a storage fault, else None."""
  for x in chain(e):
    code = getattr(x, "errno", None)
    for kind, codes, _ in _KINDS:
      if isinstance(x, OSError) and code in codes:
        return kind, _path_of(e)
  for x in chain(e):
    for kind, _, words in _KINDS:
      if re.search(words, str(x)):
        return kind, _path_of(e)
  return None


def _mount_of(path: str) -> str:
  path = os.path.abspath(path)
  while not os.path.ismount(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return path


def _where(kind: str, path: str | None) -> str:
  if not path:
    return "the workdir's storage"
  if re.match(r"(gs|s3)://", path):
    return "/".join(path.split("/")[:3]) if kind != "access denied" else path
  if kind == "disk full":
    mount = _mount_of(path)
    try:
      usage = shutil.disk_usage(mount)
      return f"{mount} ({usage.free / 2**20:.1f} MiB free of {usage.total / 2**20:.1f} MiB)"
    except OSError:
      return mount
  return os.path.dirname(path) if kind == "read-only storage" and not os.path.isdir(path) else path


def first_line(text: str, limit: int = 300) -> str:
  line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
  return line if len(line) <= limit else line[:limit] + "..."


def describe(e: BaseException, where: str | None = None) -> tuple[str, str] | None:
  """(what happened, what to do) for a fault, else None (not a fault: keep the traceback)."""
  fault = next((x for x in chain(e) if isinstance(x, (Fault, *_ONE_LINE))), None)
  if fault is not None:
    return first_line(str(fault), 2000), ""
  storage = storage_fault(e)
  if storage is not None:
    kind, path = storage
    path = path or where
    cause = next((x for x in chain(e) if storage_fault_in(x)), e)
    detail = first_line(f"{type(cause).__name__}: {cause}", 100)
    return (f"{kind}{f' at {path}' if path else ''} ({detail})",
            _ADVICE[kind].format(where=_where(kind, path)))
  worker = worker_death(e)
  if worker is not None:
    return worker, "lower config.data.num_workers or config.data.worker_buffer_size, or give the job more memory"
  return None


def storage_fault_in(x: BaseException) -> bool:
  return (isinstance(x, OSError) and getattr(x, "errno", None) in {c for _, cs, _ in _KINDS for c in cs}) or any(
      re.search(words, str(x)) for _, _, words in _KINDS)


_WORKER_DEATH = re.compile(r"Worker process was terminated unexpectedly with exit code (-?\d+)")


def worker_death(e: BaseException) -> str | None:
  """Which Grain worker died and how: Grain's message names the exit code only, so the worker is found
  among the child processes noted by `remember_workers`."""
  for x in chain(e):
    m = _WORKER_DEATH.search(str(x))
    if m:
      return describe_exit(_dead_worker(), int(m.group(1)))
  return None


_workers: list = []


def remember_workers() -> None:
  """Notes this process's live child processes (Grain's workers, once they started), so that a worker that
  dies later can be named: multiprocessing forgets a dead child as soon as another one is looked at."""
  import multiprocessing
  _workers[:] = sorted((p for p in multiprocessing.active_children() if p.name.startswith("grain")),
                       key=lambda p: p.pid or 0)


def _dead_worker() -> str:
  for i, p in enumerate(_workers):
    if p.exitcode not in (None, 0):
      return f"Grain data worker {i} of {len(_workers)} (pid {p.pid})"
  return "a Grain data worker process"


def runtime_error(e: BaseException) -> bool:
  """Whether `e` comes from XLA's runtime (a collective, a transfer): in a multi-process job, what a
  peer's death looks like from the survivor's side before the peer watch has named it."""
  return any(type(x).__name__ in ("JaxRuntimeError", "XlaRuntimeError") or re.search(_PEER_GONE, str(x))
             for x in chain(e))


# How a collective or the coordination service says that a peer is gone (Orbax re-raises Gloo's error as a
# ValueError).
_PEER_GONE = r"Gloo \w+ failed|Connection reset by peer|UNAVAILABLE: |DEADLINE_EXCEEDED: |coordination service"


def describe_exit(who: str, code: int) -> str:
  if code < 0:
    try:
      name = signal.Signals(-code).name
    except ValueError:
      name = f"signal {-code}"
    why = (", as the kernel's out-of-memory killer ends a process when host memory runs out (see `dmesg`)"
           if -code == signal.SIGKILL else "")
    return f"{who} was killed by {name}{why}"
  return f"{who} exited with status {code}"


def program_name(module: str | None = None) -> str:
  """How the user started this command: its entry point (lanser-train), else its module."""
  prog = os.path.basename(sys.argv[0]) if sys.argv else ""
  return prog if prog.startswith("lanser-") else (module or prog or "lanser")


def command_line(argv: list[str] | None = None, module: str | None = None) -> str:
  """The command as the user can type it again (entry point name, or python -m module), less --verbose."""
  argv = list(sys.argv if argv is None else argv)
  prog = os.path.basename(argv[0]) if argv else ""
  if not prog.startswith("lanser-") and module:
    head = ["python", "-m", module]
  else:
    head = [prog or "python"]
  rest = [a for a in argv[1:] if a not in ("--verbose", "--verbose=true", "--verbose=True")]
  return shlex.join(head + rest)


def line(e: BaseException, program: str, rerun: str | None, where: str | None = None) -> str | None:
  """The one line for a fault, else None. `where`: the path the command was told to use (its workdir or
  output), named when the error names none (s3fs's PermissionError says only "Forbidden")."""
  described = describe(e, where)
  if described is None:
    return None
  what, todo = described
  safe = "; ".join(safe_notes(e))
  out = f"{program}: {what}"
  if safe:
    out += f"; {safe}"
  steps = [s for s in (todo, f"rerun: {rerun}" if rerun else "") if s]
  if steps:
    out += ". " + (", then ".join(steps)[:1].upper() + ", then ".join(steps)[1:])
  return f"{out} {_VERBOSE_HINT}"
