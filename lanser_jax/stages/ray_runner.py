"""Runs the offline chain on Ray (`lanser-label --runner=ray`): the manifest once, then every piece as its own
pipeline asr(p) -> label(p) -> features(p) over pools of actors, scheduled as actors free up and retried when a
worker dies; the only module that imports Ray (docs/ray.md).

Each stage gets `config.ray.<stage>.num_actors` actors holding `num_cpus`/`num_gpus`/`resources` for the whole
job (stages/defaults.py, `ray_config`). An actor sets its stage up once (`Stage.setup`: the Whisper model, the
labeler, the feature options) and runs piece after piece with the stage's own `run_piece`, so a piece's files,
summaries and errors are the local runner's, byte for byte; the driver (this process) hands a piece to the
next stage as soon as it leaves the previous one, so different pieces are in different stages at once and no
stage waits for the slowest piece of another. A piece whose summary exists is skipped, as by the local runner.

Faults: an actor whose process dies is restarted by Ray and its piece retried (`max_restarts=-1`,
`max_task_retries=config.ray.max_retries`; an exception is retried as well). A piece that fails on every
attempt stops only its own pipeline; the others finish, the stages whose pieces are all complete are merged,
the failed pieces are listed in <workdir>/errors.jsonl and summary.json, and the job ends with one line
naming them (`PiecesFailed`, a faults.Fault): a rerun does only what is missing.

The driver runs the whole-stage steps itself (the manifest, `finish`, the merges, the end-to-end summary) with
chain.py's code, and prints one progress line for the job (utterances and pieces done, rate, ETA).
"""

from __future__ import annotations

import collections
import os
import socket
import time
from typing import Any

from lanser_jax import config_checks
from lanser_jax.stages import chain, manifest, pieces, stage
from lanser_jax.utils import cli, faults, fileio
from lanser_jax.utils import progress as progress_lib

INSTALL = "pip install 'lanser-jax[ray]'"


class RayMissing(ImportError):
  """--runner=ray without Ray installed."""


class PiecesFailed(faults.Fault):
  """Pieces failed on every attempt; the message names them, the errors file and the summary."""


def import_ray():
  """Ray, or RayMissing with the one line that says how to get it."""
  try:
    import ray
    import ray.exceptions  # noqa: F401  (RayError: what a piece that failed every attempt raises)
  except ImportError as e:
    raise RayMissing(f"--runner=ray needs Ray, which is not installed: {INSTALL} (or run with "
                     "--runner=local)") from e
  return ray


class StageWorker:
  """One stage's worker, made a Ray actor by `run`: sets the stage up on its first piece (under each fold's
  config for the features stage) and keeps that state, models included, for every later piece."""

  def __init__(self, name: str, config, workdir: str, models: dict[str, Any]):
    self.name, self.config, self.workdir, self.models = name, config, workdir, models
    self._states = None

  def ready(self) -> bool:
    """Answers once the actor is placed and started: only then does the driver hand it pieces."""
    return True

  def run_piece(self, piece: int) -> dict[str, Any]:
    s, n = chain.BY_NAME[self.name], self.config.num_pieces
    t0 = time.monotonic()
    if self._states is None:
      self._states = [(c, s.setup(c, self.workdir, cli.log, **self.models))
                      for c in chain.stage_configs(self.config, self.name, self.workdir)]
    for c, state in self._states:
      if not pieces.piece_done(s.out_dir(c, self.workdir), piece, n):
        s.run_piece(state, piece, n)
    return {"seconds": time.monotonic() - t0, "pid": os.getpid(), "host": socket.gethostname()}


def actor_options(config, name: str, env: dict[str, str]) -> dict[str, Any]:
  """Ray's options for the actors of stage `name`, from config.ray.<name>."""
  r = config.ray[name]
  options = dict(num_cpus=float(r.num_cpus), num_gpus=float(r.num_gpus), max_restarts=-1,
                 max_task_retries=int(config.ray.max_retries))
  resources = {k: float(v) for k, v in (r.resources or {}).items() if v}
  if resources:
    options["resources"] = resources
  if env:
    options["runtime_env"] = {"env_vars": dict(env)}
  return options


def needed_resources(config, names) -> dict[str, float]:
  """What the actors of the stages `names` hold together (CPU, GPU and custom resources)."""
  need: dict[str, float] = collections.Counter()
  for name in names:
    r = config.ray[name]
    need["CPU"] += r.num_actors * float(r.num_cpus)
    need["GPU"] += r.num_actors * float(r.num_gpus)
    for k, v in (r.resources or {}).items():
      need[k] += r.num_actors * float(v)
  return {k: v for k, v in need.items() if v}


def check_resources(config, names, have: dict[str, float], local: bool, log=cli.log):
  """Refuses (a local Ray) or warns about (a cluster, which may add nodes) actors that cannot all be placed:
  an actor holds its resources for the whole job, so one that never starts would leave its stage waiting."""
  short = {k: (v, have.get(k, 0.0)) for k, v in needed_resources(config, names).items()
           if v > have.get(k, 0.0) + 1e-9}
  if not short:
    return
  what = ", ".join(f"{k} {need:g} > {got:g}" for k, (need, got) in short.items())
  text = (f"the Ray actors of stages {list(names)} need more than the cluster has ({what}): lower "
          "config.ray.<stage>.num_actors / num_cpus / num_gpus / resources")
  if local:
    raise config_checks.ConfigError(text)
  log(f"warning: {text}, unless the cluster's autoscaler adds nodes")


def worker_env(config, local: bool) -> dict[str, str]:
  """Environment the actors need: the offline switch and, on a local Ray, this process's import path (so the
  workers import this lanser_jax, and a test's fakes). A cluster's workers have their own install."""
  env = {}
  if config.get("offline", False):
    env["HF_HUB_OFFLINE"] = "1"
  if local:
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
  return env


def _error_text(e: BaseException) -> str:
  """The one line of a piece's last error: the fault's, or the original exception's first line."""
  cause = getattr(e, "cause", None)  # RayTaskError carries the exception the worker raised
  described = faults.describe(cause or e)
  if described is not None:
    return described[0]
  inner = cause if isinstance(cause, BaseException) else e
  return faults.first_line(f"{type(inner).__name__}: {inner}", 300)


class _Job:
  """The driver's bookkeeping: which stage each piece is at, what is in flight, what is done or failed."""

  def __init__(self, names, num_pieces: int, sizes: list[int]):
    self.names, self.num_pieces, self.sizes = list(names), num_pieces, sizes
    self.done = {n: set() for n in self.names}  # pieces complete per stage
    self.failed: dict[int, tuple[str, str]] = {}  # piece -> (stage, error)
    self.ready = {n: collections.deque() for n in self.names}
    self.starting: dict[str, int] = {}  # actors not placed yet, per stage (a cluster short of resources)

  def finished_pieces(self) -> list[int]:
    return [p for p in range(self.num_pieces) if all(p in self.done[n] for n in self.names)]

  def utterances_done(self) -> int:
    return sum(self.sizes[p] for p in self.finished_pieces())

  def advance(self, piece: int, after: int = -1):
    """Queues `piece` for its first stage after index `after` that is not complete yet."""
    for n in self.names[after + 1:]:
      if piece not in self.done[n]:
        self.ready[n].append(piece)
        return

  def line(self) -> str:
    per_stage = ", ".join(f"{n} {len(self.done[n])}" for n in self.names)
    waiting = ", ".join(f"{n} {k}" for n, k in self.starting.items() if k)
    return (f"pieces {len(self.finished_pieces())}/{self.num_pieces} ({per_stage})"
            + (f", {len(self.failed)} failed" if self.failed else "")
            + (f"; actors not placed yet: {waiting}" if waiting else ""))


def run(config, workdir: str, stage_name: str = "all", address: str = "", log=cli.log,
        timings: list | None = None, **models) -> dict | None:
  """Runs one stage or config.stages on Ray (a local one when `address` is empty and none is connected);
  returns the end-to-end summary after `all`, as chain.run_stages does. `models` (transcriber=, labeler=)
  go to every actor (tests pass fakes; Ray moves them to the workers). `timings`, when given, gets one
  {"stage", "piece", "seconds", "host", "pid"} per piece-stage run (benchmarks/label_ray.py)."""
  todo = chain.prepare(config, workdir, stage_name)
  if manifest.STAGE.name in todo:
    log("=== stage manifest (driver) ===")
    stage.run(manifest.STAGE, config, workdir, (0, 1), log)
  names = [n for n in todo if chain.BY_NAME[n].pieced]
  if names:
    _run_pieces(config, workdir, names, address, log, models, timings)
    for name in names:
      s = chain.BY_NAME[name]
      for c in chain.stage_configs(config, name, workdir):
        chain.finish_stage(s, s.setup(c, workdir, log), c, workdir, stage_name, log)
  if stage_name != "all":
    return None
  summary = chain.end_to_end_summary(config, workdir, todo)
  if summary is not None and summary["in"] and not summary["written"]:
    raise pieces.NothingSurvived(f"0 of {summary['in']} utterances survived the stages; reasons in "
                                 f"{os.path.join(workdir, 'errors.jsonl')}")
  return summary


def _piece_complete(config, workdir: str, name: str, piece: int, configs) -> bool:
  s = chain.BY_NAME[name]
  return all(pieces.piece_done(s.out_dir(c, workdir), piece, config.num_pieces) for c in configs)


def _run_pieces(config, workdir: str, names, address: str, log, models, timings):
  """Every piece through `names` on Ray; raises PiecesFailed (after the merges that can be made) when a piece
  failed on every attempt."""
  n = config.num_pieces
  num_rows = len(pieces.Manifest(manifest.manifest_path(workdir)))
  sizes = [b - a for a, b in (pieces.piece_range(num_rows, p, n) for p in range(n))]
  job = _Job(names, n, sizes)
  configs = {name: chain.stage_configs(config, name, workdir) for name in names}
  for name in names:
    job.done[name] = {p for p in range(n) if _piece_complete(config, workdir, name, p, configs[name])}
  for p in range(n):
    job.advance(p)
  busy = [name for name in names if len(job.done[name]) < n]  # stages with work now or once earlier ones finish
  skipped = len(job.finished_pieces())
  if skipped:
    log(f"[ray] {skipped} of {n} pieces are complete through {names}: skipped")
  if busy:
    ray = import_ray()
    owns = not ray.is_initialized()
    if owns:
      ray.init(address=address or None, include_dashboard=False, logging_level="WARNING")
    # A Ray this process starts (no address, none in RAY_ADDRESS as `ray job submit` sets) is this machine.
    local = not (address or os.environ.get("RAY_ADDRESS"))
    try:
      _schedule(ray, config, workdir, job, busy, local, log, models, timings)
    finally:
      if owns:
        ray.shutdown()
  if job.failed:
    _report_failed(config, workdir, job, names, log)


def _schedule(ray, config, workdir: str, job: _Job, busy, local: bool, log, models, timings):
  """The driver's loop: gives each idle actor the next ready piece of its stage and moves finished pieces on."""
  check_resources(config, busy, ray.cluster_resources(), local, log)
  env = worker_env(config, local)
  remote = ray.remote(StageWorker)
  actors = [(name, remote.options(**actor_options(config, name, env)).remote(name, config, workdir, models))
            for name in busy for _ in range(config.ray[name].num_actors)]
  # An actor gets pieces once it answers `ready`: one the cluster cannot place (yet) holds up nothing.
  starting = {actor.ready.remote(): (name, actor) for name, actor in actors}
  job.starting = collections.Counter(name for name, _ in actors)
  idle: dict[str, list] = {name: [] for name in busy}
  try:
    _loop(ray, config, job, busy, starting, idle, log, timings)
  finally:
    for _, actor in actors:
      ray.kill(actor)


def _loop(ray, config, job: _Job, busy, starting: dict, idle: dict, log, timings):
  """Until no piece is ready or running: start pieces on idle actors, take in answers (an actor placed, a piece
  done or failed on every attempt), print the progress line."""
  attempts = 1 + int(config.ray.max_retries)
  progress = progress_lib.Progress("ray", sum(job.sizes), interval=config.ray.progress_seconds,
                                   done=job.utterances_done(), unit="utterances", detail=job.line)
  log(f"[ray] {sum(len(job.ready[n]) for n in job.names)} piece-stages to run on "
      f"{ {k: v for k, v in ray.cluster_resources().items() if k in ('CPU', 'GPU', 'TPU')} }; actors: "
      + ", ".join(f"{name} {config.ray[name].num_actors}" for name in busy))
  inflight: dict[Any, tuple[str, int, Any]] = {}
  while True:
    for name in busy:
      while idle[name] and job.ready[name]:
        actor, piece = idle[name].pop(), job.ready[name].popleft()
        ref = actor.run_piece.options(retry_exceptions=True).remote(piece)
        inflight[ref] = (name, piece, actor)
    for name in busy:  # a stage none of whose actors could start: its pieces cannot run
      if job.ready[name] and not idle[name] and not job.starting[name] and not any(
          n == name for n, _, _ in inflight.values()):
        while job.ready[name]:
          job.failed[job.ready[name].popleft()] = (name, f"no actor of the {name} stage could start")
    if not inflight and not any(job.ready.values()):
      break
    finished, _ = ray.wait(list(inflight) + list(starting), num_returns=1,
                           timeout=min(config.ray.progress_seconds, 5.0))
    for ref in finished:
      if ref in starting:
        name, actor = starting.pop(ref)
        job.starting[name] -= 1
        try:
          ray.get(ref)
          idle[name].append(actor)
        except ray.exceptions.RayError as e:
          log(f"[ray] an actor of the {name} stage did not start: {_error_text(e)}")
        continue
      name, piece, actor = inflight.pop(ref)
      idle[name].append(actor)
      before = job.utterances_done()
      try:
        took = ray.get(ref)
      except ray.exceptions.RayError as e:
        job.failed[piece] = (name, _error_text(e))
        log(f"[ray] piece {piece}/{job.num_pieces} of the {name} stage failed on all {attempts} attempts: "
            f"{job.failed[piece][1]}")
        continue
      if timings is not None:
        timings.append(dict(stage=name, piece=piece, **took))
      job.done[name].add(piece)
      job.advance(piece, job.names.index(name))
      progress.update(job.utterances_done() - before)
    progress.tick()
  progress.close()


def _report_failed(config, workdir: str, job: _Job, names, log):
  """Merges the stages whose pieces all completed, lists the failed pieces in <workdir>/errors.jsonl and
  summary.json (not complete: in != written + rejected until a rerun does them) and raises PiecesFailed."""
  n, attempts = job.num_pieces, 1 + int(config.ray.max_retries)
  num_rows = sum(job.sizes)
  merged = {}
  for name in names:
    if len(job.done[name]) == n:
      s = chain.BY_NAME[name]
      for c in chain.stage_configs(config, name, workdir):
        merged[name] = chain.finish_stage(s, s.setup(c, workdir, log), c, workdir, "all", log)
  failed = []
  for piece, (name, error) in sorted(job.failed.items()):
    start, stop = pieces.piece_range(num_rows, piece, n)
    failed.append({"stage": name, "piece": piece, "num_pieces": n, "utterances": stop - start,
                   "manifest_lines": [start + 1, stop], "attempts": attempts, "error": error})
  with fileio.atomic_write(os.path.join(workdir, "errors.jsonl"), "w") as f:
    for d in failed:
      f.write(pieces.json_line({"utt_id": None, "stage": d["stage"],
                                "source": f"piece {d['piece']} of {n} (manifest lines "
                                          f"{d['manifest_lines'][0]}-{d['manifest_lines'][1]})",
                                "reason": f"piece failed on all {attempts} attempts: {d['error']}"}))
  summary = {"complete": False, "in": num_rows, "failed_pieces": failed,
             "pieces_complete": {name: len(job.done[name]) for name in names}, "num_pieces": n,
             "stages": {name: {k: v[k] for k in ("in", "written", "rejected", "reasons")} for name, v in
                        merged.items()}}
  pieces.write_json(os.path.join(workdir, "summary.json"), summary)
  first = failed[0]
  more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
  e = PiecesFailed(f"piece {first['piece']} of {n} failed in the {first['stage']} stage on all {attempts} "
                   f"attempts{more}: {first['error']}")
  faults.note_safe(e, f"{len(job.finished_pieces())} of {n} pieces are complete in {workdir}; the failed pieces "
                      f"are listed in {os.path.join(workdir, 'errors.jsonl')} and summary.json")
  raise e
