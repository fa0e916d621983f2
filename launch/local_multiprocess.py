"""Starts N processes of one command on this machine, joined as one JAX job (for tests and laptops).

  python launch/local_multiprocess.py --num_processes=2 --devices_per_process=4 -- \
      -m lanser_jax.main --config=lanser_jax/experiments/synthetic.py:runlocal --workdir=/tmp/run2x4

Each process gets --distributed=explicit with a free localhost coordinator port, its process id, and (on CPU)
XLA_FLAGS=--xla_force_host_platform_device_count=<devices_per_process>. Its output lines are prefixed with
[pK]. If one process fails, the others are stopped and the exit status is the first failure's.
The labelling stages take the same launcher with their own flags (--num_processes/--process_index are set for
them when --stage_flags is given).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time

from absl import app, flags

from lanser_jax.utils import cli

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 2, "Processes to start.", flag_values=FLAGS)
_DEVICES_PER_PROCESS = flags.DEFINE_integer("devices_per_process", 4, "Fake CPU devices per process (0: leave "
                                            "the platform's devices alone).", flag_values=FLAGS)
_STAGE_FLAGS = flags.DEFINE_bool("stage_flags", False, "Pass --num_processes/--process_index (the offline stages) "
                                 "instead of JAX distributed flags.", flag_values=FLAGS)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _pump(proc: subprocess.Popen, prefix: str):
  for line in proc.stdout:
    sys.stdout.write(f"{prefix} {line}")
  sys.stdout.flush()


def launch(args: list[str], num_processes: int, devices_per_process: int, stage_flags: bool = False,
           env: dict[str, str] | None = None, timeout_s: float | None = None) -> int:
  port = free_port()
  procs = []
  for i in range(num_processes):
    penv = dict(os.environ if env is None else env)
    if devices_per_process:
      flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "", penv.get("XLA_FLAGS", ""))
      penv["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices_per_process}".strip()
      penv.setdefault("JAX_PLATFORMS", "cpu")
    extra = ([f"--num_processes={num_processes}", f"--process_index={i}"] if stage_flags else
             ["--distributed=explicit", f"--coordinator_address=127.0.0.1:{port}",
              f"--num_processes={num_processes}", f"--process_id={i}"])
    proc = subprocess.Popen([sys.executable, *args, *extra], env=penv, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=_pump, args=(proc, f"[p{i}]"), daemon=True).start()
    procs.append(proc)
  deadline = None if timeout_s is None else time.time() + timeout_s
  status = 0
  while any(p.poll() is None for p in procs):
    failed = [p for p in procs if p.poll() not in (None, 0)]
    if failed or (deadline and time.time() > deadline):
      status = failed[0].returncode if failed else 124
      for p in procs:
        if p.poll() is None:
          p.kill()
      break
    time.sleep(0.2)
  for p in procs:
    p.wait()
  return status or next((p.returncode for p in procs if p.returncode), 0)


def main(argv: list[str]) -> int:
  command = argv[1:]  # everything after `--`
  if not command:
    raise app.UsageError("give the command after --, e.g. -- -m lanser_jax.main --config=... --workdir=...")
  return launch(command, _NUM_PROCESSES.value, _DEVICES_PER_PROCESS.value, _STAGE_FLAGS.value)


if __name__ == "__main__":
  cli.run(main, FLAGS)
