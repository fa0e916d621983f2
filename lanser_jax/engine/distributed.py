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
"""

from __future__ import annotations

import os
import socket
import time

import jax
from absl import logging

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
               process_id: int | None = None, timeout_s: int = 300) -> None:
  if mode not in MODES:
    raise DistributedInitError(f"distributed mode {mode!r} is not one of {MODES}")
  if mode == "off":
    return
  kwargs = {"initialization_timeout": int(timeout_s)}
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
