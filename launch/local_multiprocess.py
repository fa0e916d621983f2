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

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time


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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=4,
                      help="fake CPU devices per process (0: leave the platform's devices alone)")
  parser.add_argument("--stage_flags", action="store_true",
                      help="pass --num_processes/--process_index (the offline stages) instead of JAX distributed "
                           "flags")
  parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the python arguments")
  a = parser.parse_args()
  command = a.command[1:] if a.command[:1] == ["--"] else a.command
  sys.exit(launch(command, a.num_processes, a.devices_per_process, a.stage_flags))


if __name__ == "__main__":
  main()
