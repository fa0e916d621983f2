"""Processes that die under a training job: a Grain data worker killed by SIGKILL mid-epoch (what the kernel's
out-of-memory killer does), and one process of a 2-process job killed the same way. The job says which
process died and why it likely did, in one line, within a bounded time, and the same command resumes."""

import os
import signal
import subprocess
import sys
import time

import pytest

from fault_helpers import FAULT_STATUS, env, faults_line, run, step_of, train_flags
from helpers import REPO

pytestmark = [pytest.mark.faults, pytest.mark.subprocess, pytest.mark.slow]


def _start(args, log_path, extra_env=None):
  log = open(log_path, "w")
  proc = subprocess.Popen([sys.executable, "-m", "lanser_jax.main", *args], cwd=REPO, env=env(**(extra_env or {})),
                          stdout=subprocess.DEVNULL, stderr=log, text=True)
  proc.log_path = log_path
  return proc


def _wait_for(proc, text, timeout=600):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if text in open(proc.log_path).read():
      return
    if proc.poll() is not None:
      pytest.fail(f"exited with {proc.returncode} before {text!r}:\n{open(proc.log_path).read()[-3000:]}")
    time.sleep(0.5)
  proc.kill()
  pytest.fail(f"no {text!r} within {timeout} s")


def _grain_workers(pid):
  """The worker processes Grain spawned for this process (multiprocessing's spawn children)."""
  out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
  workers = []
  for child in map(int, out):
    with open(f"/proc/{child}/cmdline", "rb") as f:
      if b"spawn_main" in f.read():
        workers.append(child)
  return sorted(workers)


def test_grain_worker_killed_mid_epoch_is_named_and_the_rerun_resumes(synth_dir, tmp_path):
  workdir = tmp_path / "run"
  args = [*train_flags(synth_dir, **{"num_train_steps": 200, "checkpoint_every_steps": 5, "eval_every_steps": 200,
                                     "data.test_split": "", "data.num_workers": 2}), f"--workdir={workdir}"]
  proc = _start(args, tmp_path / "train.log")
  _wait_for(proc, "step 10/200")
  workers = _grain_workers(proc.pid)
  assert len(workers) == 2, workers
  os.kill(workers[1], signal.SIGKILL)
  proc.wait(timeout=120)
  stderr = open(proc.log_path).read()
  line = faults_line(stderr)
  print(f"fault line: {line}")
  assert proc.returncode == FAULT_STATUS, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  assert line.startswith("lanser_jax.main: Grain data worker 1 of 2 (pid %d) was killed by SIGKILL" % workers[1]), line
  assert "out-of-memory killer" in line and "config.data.num_workers" in line, line
  complete = step_of(r"checkpoint (\d+) is complete", line)
  assert complete >= 10, line
  rerun = run("lanser_jax.main", [a.replace("num_train_steps=200", f"num_train_steps={complete + 5}")
                                  for a in args])
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"resuming from {workdir / 'checkpoints' / str(complete)}" in rerun.stderr


def _two_processes(synth_dir, workdir, tmp_path, tag, steps):
  from local_multiprocess import free_port  # launch/, on the path below
  port = free_port()
  args = [*train_flags(synth_dir, **{"num_train_steps": steps, "checkpoint_every_steps": 5,
                                     "eval_every_steps": steps, "data.test_split": ""}),
          f"--workdir={workdir}", "--distributed=explicit", f"--coordinator_address=127.0.0.1:{port}",
          "--num_processes=2", "--peer_timeout_s=10"]
  flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
  return [_start([*args, f"--process_id={i}"], tmp_path / f"{tag}{i}.log",
                 {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count=1"})
          for i in range(2)]


@pytest.mark.parametrize("victim", [1, 0], ids=["worker_process", "coordinator"])
def test_peer_killed_stops_the_survivor_within_a_bounded_time_and_rerunning_both_resumes(synth_dir, tmp_path, victim):
  """Process 1 killed: process 0's watch names it within --peer_timeout_s, in one line. Process 0 (the
  coordinator) killed: JAX's client in process 1 loses the coordination service and aborts the process
  itself (SIGABRT) about 0.1 s later, with its own message saying another task died, before the watch, which
  polls once a second, could speak; the callback JAX's client offers instead cannot take a Python function
  in this jaxlib (std::bad_cast). docs/reliability.md says what the user sees. Either way no process is
  left waiting."""
  sys.path.insert(0, os.path.join(REPO, "launch"))
  workdir = tmp_path / "run"
  procs = _two_processes(synth_dir, workdir, tmp_path, "p", 400)
  try:
    _wait_for(procs[0], "step 10/400")
    procs[victim].send_signal(signal.SIGKILL)
    t0 = time.time()
    survivor = procs[1 - victim]
    survivor.wait(timeout=60)  # --peer_timeout_s=10, not JAX's own heartbeat timeout (100 s and more)
    waited = time.time() - t0
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  stderr = open(survivor.log_path).read()
  print(f"survivor exited with {survivor.returncode} after {waited:.1f} s; last line: {faults_line(stderr)}")
  assert waited < 45, waited
  if victim == 1:
    line = faults_line(stderr)
    assert survivor.returncode == FAULT_STATUS, stderr[-3000:]
    assert line.startswith("lanser_jax.main: process 1 of 2 stopped: no heartbeat for 1"), line
    assert "Start every process of the job again" in line and "is complete" in line, line
    assert "Check failure stack" not in stderr and "Fatal Python error" not in stderr, stderr[-3000:]
  else:
    assert survivor.returncode == -signal.SIGABRT, stderr[-3000:]
    assert "Terminating process because the JAX distributed service detected fatal errors" in stderr
  complete = max(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit())
  again = _two_processes(synth_dir, workdir, tmp_path, "again", complete + 5)
  for p in again:
    p.wait(timeout=900)
  for p in again:
    assert p.returncode == 0, open(p.log_path).read()[-3000:]
  assert f"resuming from {workdir / 'checkpoints' / str(complete)}" in open(again[0].log_path).read()


def test_disk_full_in_a_two_process_job_stops_both_processes_each_with_one_line(synth_dir, tmp_path):
  """The step-10 checkpoint write fails on a full disk (process 0 writes the replicated arrays): process 0
  ends with the disk-full line, process 1 with a line naming process 0 and its fault, both with status 3,
  instead of both waiting in Orbax's save (engine/distributed.py, save_barrier); with room again, the same
  two commands resume from step 5."""
  from fault_helpers import grow, tmpfs
  sys.path.insert(0, os.path.join(REPO, "launch"))
  with tmpfs("3m") as disk:
    workdir = os.path.join(disk, "run")
    procs = _two_processes(synth_dir, workdir, tmp_path, "p", 20)
    try:
      for p in procs:  # the step-10 save fails; process 0 learns it at the step-15 save at the latest
        p.wait(timeout=600)
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
    logs = [open(p.log_path).read() for p in procs]
    lines = [faults_line(log) for log in logs]
    for line in lines:
      print(f"fault line: {line}")
    assert [p.returncode for p in procs] == [FAULT_STATUS, FAULT_STATUS], [log[-3000:] for log in logs]
    assert "disk full at " + os.path.join(workdir, "checkpoints", "10.orbax-checkpoint-tmp") in lines[0], lines[0]
    assert "checkpoint 5 is complete; step 10 was not written" in lines[0], lines[0]
    assert lines[1].startswith("lanser_jax.main: process 0 of 2 stopped: disk full at "), lines[1]
    assert "checkpoint 5 is complete" in lines[1] and "Start every process of the job again" in lines[1], lines[1]
    for log in logs:
      assert "Check failure stack" not in log and "Traceback" not in log, log[-3000:]
    grow(disk, "64m")
    again = _two_processes(synth_dir, workdir, tmp_path, "again", 20)
    for p in again:
      p.wait(timeout=900)
    for p in again:
      assert p.returncode == 0, open(p.log_path).read()[-3000:]
    assert f"resuming from {os.path.join(workdir, 'checkpoints', '5')}" in open(again[0].log_path).read()


def _label_processes(corpus, workdir, tmp_path, tag):
  """Both processes of `lanser-label --jax_distributed`, joined through LANSER_COORDINATOR (explicit mode)."""
  from local_multiprocess import free_port
  port = free_port()
  args = [f"--config={REPO}/lanser_jax/experiments/labeling/crema_d.py", f"--workdir={workdir}",
          f"--config.manifest.root={corpus}", "--config.wait_seconds=600", "--jax_distributed",
          "--peer_timeout_s=10"]
  procs = []
  for i in range(2):
    log = open(tmp_path / f"{tag}{i}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "lanser_jax.stages.main", *args], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, text=True,
                            env=env(JAX_PLATFORMS="cpu", LANSER_COORDINATOR=f"127.0.0.1:{port}",
                                    LANSER_NUM_PROCESSES="2", LANSER_PROCESS_ID=str(i)))
    proc.log_path = tmp_path / f"{tag}{i}.log"
    procs.append(proc)
  return procs


def test_labelling_peer_killed_stops_the_survivor_with_one_line_and_rerunning_both_finishes(tmp_path):
  """`lanser-label --jax_distributed` has the training's peer watch: process 1 killed while process 0 works
  (and would then wait up to config.wait_seconds for process 1's pieces), process 0 names it within
  --peer_timeout_s; the same two commands then finish the job."""
  from builders import make_crema_d
  sys.path.insert(0, os.path.join(REPO, "launch"))
  corpus = tmp_path / "crema"
  make_crema_d(corpus, actors=range(1001, 1061))
  workdir = tmp_path / "w"
  procs = _label_processes(corpus, workdir, tmp_path, "p")
  try:
    _wait_for(procs[1], "=== stage manifest (process 1 of 2)")
    procs[1].send_signal(signal.SIGKILL)
    t0 = time.time()
    procs[0].wait(timeout=120)
    waited = time.time() - t0
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  out = open(procs[0].log_path).read()
  line = faults_line(out)
  print(f"survivor exited with {procs[0].returncode} after {waited:.1f} s; fault line: {line}")
  assert procs[0].returncode == FAULT_STATUS, out[-3000:]
  assert waited < 60, waited
  assert line.startswith("lanser_jax.stages.main: process 1 of 2 stopped: no heartbeat for 1"), line
  assert "Start every process of the job again" in line, line
  assert "complete pieces, which a rerun skips: " in line or "; no stage piece is complete." in line, line
  assert "Traceback" not in out and "Check failure stack" not in out, out[-3000:]
  again = _label_processes(corpus, workdir, tmp_path, "again")
  for p in again:
    p.wait(timeout=600)
  for p in again:
    assert p.returncode == 0, open(p.log_path).read()[-3000:]
  assert (workdir / "features" / "summary.json").exists()
