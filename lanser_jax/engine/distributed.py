"""Joining JAX's distributed runtime: TPU pods, Slurm GPU clusters, or an explicit coordinator.

`initialize(mode, ...)` is called once per process before any other JAX call:
  * mode "off": a single process (the default);
  * mode "auto": JAX's own cluster detection (TPU pod metadata, Slurm's SLURM_* variables, ...);
  * mode "explicit": coordinator address, number of processes and this process's id from the flags or from
    LANSER_COORDINATOR / LANSER_NUM_PROCESSES / LANSER_PROCESS_ID (a local multi-process launch, other clusters).
A coordinator that does not answer within `timeout_s` gives an error that says which address and how many
processes were expected: non-coordinator processes first wait for the coordinator's port themselves, because
XLA aborts the whole process (no Python exception) when it cannot connect. Before joining, every process logs
what it waits for, so that the log of a job that stalls on a missing peer says which one.

Once joined, a `PeerWatch` thread in every process stamps a heartbeat into the coordinator's key-value store
and reads the others'. A process that stops (SIGKILL, a lost host) is named by the survivors within
`peer_timeout_s`: each prints one line and exits (faults.py), instead of waiting in a collective for ever or
until JAX's own heartbeat check aborts it with a C++ stack trace. A process that stops on an error first
publishes its line (`stop_job`), so the others stop at once, saying why.
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import threading
import time
from typing import Callable

import jax
from absl import logging

from lanser_jax.utils import faults

MODES = ("off", "auto", "explicit")


class DistributedInitError(RuntimeError):
  pass


def _explicit_settings(coordinator: str | None, num_processes: int | None, process_id: int | None):
  coordinator = coordinator or os.environ.get("LANSER_COORDINATOR")
  num = num_processes if num_processes is not None else os.environ.get("LANSER_NUM_PROCESSES")
  pid = process_id if process_id is not None else os.environ.get("LANSER_PROCESS_ID")
  missing = [name for name, v in (("coordinator address (--coordinator_address or LANSER_COORDINATOR)",
                                   coordinator),
                                  ("number of processes (--num_processes or LANSER_NUM_PROCESSES)", num),
                                  ("process id (--process_id or LANSER_PROCESS_ID)", pid)) if v in (None, "")]
  if missing:
    raise DistributedInitError("distributed mode 'explicit' needs " + ", ".join(missing))
  num, pid = int(num), int(pid)
  if not 0 <= pid < num:
    raise DistributedInitError(f"process id {pid} is outside [0, {num})")
  return coordinator, num, pid


def _wait_for_port(address: str, timeout_s: float):
  host, _, port = address.rpartition(":")
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise DistributedInitError(
            f"JAX distributed runtime did not start within {timeout_s:g} s: coordinator {address} does not "
            f"answer ({e}). Start process 0 first (it serves the coordinator), and check the address and that "
            f"its port is reachable from this host.") from e
      time.sleep(0.5)


def initialize(mode: str = "off", coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300, peer_timeout_s: float = 60.0) -> None:
  if mode not in MODES:
    raise DistributedInitError(f"distributed mode {mode!r} is not one of {MODES}")
  if mode == "off":
    return
  # JAX's own check of dead peers aborts the process; it must come after ours, which says who and exits.
  kwargs = {"initialization_timeout": int(timeout_s),
            "heartbeat_timeout_seconds": int(max(100, 3 * peer_timeout_s)),
            "shutdown_timeout_seconds": int(max(10, peer_timeout_s))}
  where = "the address JAX detects for this cluster (TPU metadata or Slurm variables)"
  expected = "all"
  if mode == "explicit":
    coordinator_address, num_processes, process_id = _explicit_settings(
        coordinator_address, num_processes, process_id)
    kwargs.update(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
    where, expected = coordinator_address, str(num_processes)
  logging.info("joining JAX distributed runtime: coordinator %s, %s processes, waiting up to %d s",
               where, expected, timeout_s)
  if mode == "explicit" and process_id != 0:
    _wait_for_port(coordinator_address, timeout_s)
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:
    raise DistributedInitError(
        f"JAX distributed runtime did not start within {timeout_s} s: coordinator {where}, expecting "
        f"{expected} processes. Check that every process was started with the same coordinator address and "
        f"process count, that the coordinator's port is reachable, and that process ids are distinct. "
        f"Cause: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
  logging.info("joined JAX distributed runtime: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())
  start_peer_watch(peer_timeout_s, where)


# ---------------------------------------------------------------------------------------------------
# Peers that stop.

_KEY = "lanser_peer_watch"
FAULT_STATUS = 3  # as lanser_jax.utils.cli.FAULT_STATUS (a fault, one line)
_watch: "PeerWatch | None" = None
_safe_note: Callable[[], str] = lambda: ""


def set_safe_note(note: Callable[[], str]) -> None:
  """What this process's line says is safe when a peer stops (the command knows: its checkpoints, pieces)."""
  global _safe_note
  _safe_note = note


class PeerWatch(threading.Thread):
  """Heartbeats through the coordinator's key-value store; names the first peer that stops or fails."""

  def __init__(self, client, process_id: int, num_processes: int, timeout_s: float, coordinator: str,
               interval_s: float = 1.0):
    super().__init__(daemon=True, name="lanser-peer-watch")
    self.client, self.pid, self.num, self.timeout_s = client, process_id, num_processes, timeout_s
    self.coordinator, self.interval_s = coordinator, interval_s
    self.verdict: str | None = None
    self.found = threading.Event()
    self._stopping = False

  def _get(self, key: str) -> str | None:
    try:
      return self.client.key_value_try_get(key)
    except Exception as e:  # noqa: BLE001 -- NOT_FOUND, or the coordinator is gone (told apart below)
      if "NOT_FOUND" in str(e) or "not found" in str(e).lower():
        return None
      raise

  def run(self):
    beat, last_value, last_change, done = 0, {}, {}, set()
    unreachable_since = None
    while not self._stopping:
      now = time.monotonic()
      try:
        beat += 1
        self.client.key_value_set(f"{_KEY}/alive/{self.pid}", str(beat), allow_overwrite=True)
        unreachable_since = None
        for peer in range(self.num):
          if peer == self.pid or peer in done:
            continue
          if self._get(f"{_KEY}/done/{peer}") is not None:  # finished: its heartbeat stops, rightly
            done.add(peer)
            continue
          failed = self._get(f"{_KEY}/failed/{peer}")
          if failed is not None:
            return self._found(f"process {peer} of {self.num} stopped: {failed}")
          value = self._get(f"{_KEY}/alive/{peer}")
          if value != last_value.get(peer) or peer not in last_change:
            last_value[peer], last_change[peer] = value, now
          elif now - last_change[peer] > self.timeout_s:
            return self._found(
                f"process {peer} of {self.num} stopped: no heartbeat for {now - last_change[peer]:.0f} s "
                f"(killed, out of memory, or its host is gone; see its log)")
      except Exception as e:  # noqa: BLE001 -- the coordinator (process 0) does not answer
        if self.pid == 0 or self._stopping or 0 in done:
          return
        unreachable_since = unreachable_since or now
        if now - unreachable_since > min(self.timeout_s, 10.0):
          return self._found(f"process 0 of {self.num} (the coordinator, {self.coordinator}) stopped: it no "
                             f"longer answers ({faults.first_line(str(e), 120)})")
      time.sleep(self.interval_s)

  def _found(self, verdict: str):
    self.verdict = verdict
    self.found.set()
    if self._stopping:
      return
    # The main thread may be blocked in a collective that never returns: this thread ends the process.
    note = ""
    try:
      note = _safe_note()
    except Exception:  # noqa: BLE001 -- the note is a courtesy; the verdict is what matters
      pass
    module = getattr(sys.modules["__main__"].__spec__, "name", None)
    rerun = faults.command_line(module=module)
    print(f"{faults.program_name(module)}: {verdict}{f'; {note}' if note else ''}. Start every process of the job "
          f"again to resume (this process: {rerun})", file=sys.stderr, flush=True)
    os._exit(FAULT_STATUS)

  def finish(self):
    """This process ends normally (atexit, before JAX's shutdown barrier, which keeps the coordinator up
    until every process reaches it): the others stop watching it."""
    if self._stopping:
      return
    self._stopping = True
    try:
      self.client.key_value_set(f"{_KEY}/done/{self.pid}", "1", allow_overwrite=True)
    except Exception:  # noqa: BLE001 -- the coordinator may be gone already
      pass

  def publish_failure(self, message: str):
    self._stopping = True
    try:
      self.client.key_value_set(f"{_KEY}/failed/{self.pid}", message, allow_overwrite=True)
    except Exception:  # noqa: BLE001 -- the coordinator may be gone already
      pass


def start_peer_watch(timeout_s: float, coordinator: str) -> None:
  global _watch
  from jax._src import distributed as jax_distributed  # the coordination client JAX itself uses
  client = jax_distributed.global_state.client
  if client is None or jax.process_count() < 2 or timeout_s <= 0:
    return
  _watch = PeerWatch(client, jax.process_index(), jax.process_count(), timeout_s, coordinator)
  _watch.start()
  atexit.register(_watch.finish)  # registered after JAX's shutdown, so it runs before it


def save_barrier() -> Callable[..., None]:
  """The barrier Orbax's background saves wait at (`AsyncOptions.barrier_sync_fn`): JAX's own, except in a
  thread whose save already failed, which goes on at once with its error.

  A multi-process save ends with barriers in background threads: each process's writes, then all processes
  meet ("async_write_complete"), process 0 renames the step into place, and they meet again. Orbax 0.12.8
  reaches the last barrier (its save-progress flag, set in a `finally`) also after a failed write, so the
  process whose write failed (a full disk) waited there for peers that wait for it at the first barrier,
  and every process stayed in its save until Orbax's 20-minute timeout, heartbeats going on. Here, a barrier
  called while an error is on its way out of the thread re-raises that error: the save fails at once, its
  process's main thread gets the error at the next save (or at the end of training) and ends with the line,
  publishing it (`stop_job`), and the peer watch stops the others, each naming the failed process."""
  from orbax.checkpoint import multihost
  wait = multihost.get_barrier_sync_fn()

  def barrier(*, key: str, timeout_ms: int) -> None:
    failed = sys.exc_info()[1]
    if failed is not None:  # inside Orbax's `finally` after a failed write: nobody will meet us
      raise failed
    wait(key=key, timeout_ms=timeout_ms)

  return barrier


def peer_verdict(wait_s: float | None = None) -> str | None:
  """After an error in this process: whether a peer stopped (waiting up to `wait_s`, default the watch's
  timeout, for the watch to tell), which is then the cause to report. None outside a multi-process job."""
  if _watch is None:
    return None
  _watch.found.wait(_watch.timeout_s + 2 * _watch.interval_s if wait_s is None else wait_s)
  return _watch.verdict


def watching() -> bool:
  """Whether this process is one of a multi-process job whose peers it watches."""
  return _watch is not None


def stop_job(message: str | None, exit_status: int = FAULT_STATUS) -> None:
  """This process stops on an error (`message`: the fault, None: another error, shown with its traceback):
  its peers learn why and stop too, and the process ends at once with `exit_status`, without JAX's shutdown
  barrier, which would wait for peers that may be blocked in a collective. Outside a job: returns."""
  if _watch is None:
    return
  _watch.publish_failure(message or "it failed with an error (see its log)")
  if _watch.pid == 0:  # the peers read the message from this process's coordinator: give them time
    time.sleep(3 * _watch.interval_s)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(exit_status)
