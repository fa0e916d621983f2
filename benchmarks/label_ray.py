r"""The labelling chain on the local runner and on Ray in one run, and a simulation of a 30,000-hour job that
compares the static split (`j % N`) with dynamic scheduling.

  /tmp/rayvenv/bin/python benchmarks/label_ray.py [--num=64 --num_pieces=8 --rounds=1] [--out=DIR] [--smoke]
  python benchmarks/label_ray.py --simulate_only [--hours=30000 --hosts=64 --pieces=1024]   # no Ray needed

1. The chain (needs Ray, eSpeak NG, Whisper tiny.en and MiniLM: the demo's assets). The demo's pre-training
   corpus (--num utterances, seed 0, lanser_jax/demo/corpus.py) goes through the demo's labelling config
   (lanser_jax/experiments/labeling/demo.py: Whisper tiny.en int8, the MiniLM sentence-encoder labeler, 64-bin
   log-mel) cut into --num_pieces pieces, once with `--runner=local` and once with `--runner=ray` (a local Ray
   over this machine's cores, default actors), each in its own process, so each pays its own imports and model
   loads; with --rounds, each runner that many times, alternating which goes first. Prints wall time (median),
   pieces per minute and Ray's overhead (Ray's wall time less the local runner's),
   and whether the two workdirs hold the same bytes. The Ray run's per-piece stage times give the measured
   cost per second of audio that the simulation uses.
2. The simulation (pure Python). --hours of audio in --pieces pieces (and in 4x as many) over --hosts hosts. A piece's cost is
   its audio times the measured cost per audio second times a log-normal factor of mean 1 and spread sigma
   (a heavy tail: long files, hard audio, slow hosts); a fraction of hosts is preempted once, at a uniform time,
   losing the piece it was running and coming back --down_hours later. Static: host i runs the pieces
   j % hosts == i in order and, after a preemption, resumes its own list (requeued, as Slurm or an Indexed Job
   pod retry does). Dynamic: a free host takes the next piece; a preempted piece goes back to the front of the
   queue at once (Ray's retry). Makespans in hours (median over --seeds draws), beside the ideal total/hosts.
Writes DIR/label_ray.json. --smoke: 8 utterances over 4 pieces, a small simulation.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import heapq
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--num", type=int, default=64, help="demo utterances for the chain")
  p.add_argument("--num_pieces", type=int, default=8, help="pieces of the chain run")
  p.add_argument("--rounds", type=int, default=1,
                 help="runs of each runner, alternating which goes first (the machine may be shared); medians")
  p.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "lanser_bench"))
  p.add_argument("--smoke", action="store_true")
  p.add_argument("--simulate_only", action="store_true", help="skip the chain (no Ray, no models)")
  p.add_argument("--cost", type=float, default=0.0,
                 help="chain seconds per audio second for the simulation (0: measured by the chain run, else "
                      "the figure recorded in benchmarks/README.md)")
  p.add_argument("--hours", type=float, default=30000.0)
  p.add_argument("--pieces", type=int, default=1024, help="pieces of the simulated job (peoples_speech.py)")
  p.add_argument("--hosts", type=int, default=64)
  p.add_argument("--down_hours", type=float, default=1.0, help="how long a preempted host is gone")
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--_worker", choices=("local", "ray"), help=argparse.SUPPRESS)
  p.add_argument("--_workdir", help=argparse.SUPPRESS)
  p.add_argument("--_config", help=argparse.SUPPRESS)
  return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------
# 1. The chain, local and on Ray.


def _worker(args):
  """One run in this process (started by `chain`): prints one JSON line with its timings."""
  from lanser_jax import config_lib
  config = config_lib.load_experiment(args._config)
  config.num_pieces = args.num_pieces
  t0 = time.monotonic()
  timings = []
  if args._worker == "local":
    from lanser_jax.stages import chain
    chain.run_stages(config, args._workdir, "all", (0, 1))
  else:
    from lanser_jax.stages import ray_runner
    ray_runner.run(config, args._workdir, "all", timings=timings)
  print(json.dumps({"seconds": time.monotonic() - t0, "timings": timings}))


def _digest(workdir: str) -> dict[str, str]:
  out = {}
  for folder, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out


def chain(args, work: str) -> dict:
  from lanser_jax.demo import corpus
  manifest = corpus.build_pretrain_corpus(os.path.join(work, "corpus"), args.num, seed=0)
  config = (f"lanser_jax/experiments/labeling/demo.py:corpus=pretrain,list={manifest},"
            "labeler=sentence_encoder")
  env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=REPO)
  runs, walls = {}, collections.defaultdict(list)
  for runner in [r for k in range(args.rounds) for r in (("local", "ray") if k % 2 == 0 else ("ray", "local"))]:
    workdir = os.path.join(work, runner)
    if os.path.exists(workdir):  # a later round starts from nothing, as the first did
      shutil.rmtree(workdir)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), f"--_worker={runner}",
                           f"--_workdir={workdir}", f"--_config={config}", f"--num_pieces={args.num_pieces}"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
      raise SystemExit(f"the {runner} run failed:\n{proc.stderr[-4000:]}")
    inner = json.loads(proc.stdout.strip().splitlines()[-1])
    walls[runner].append(round(wall, 2))
    wall = statistics.median(walls[runner])
    runs[runner] = {"wall_seconds": round(wall, 2), "rounds_wall_seconds": walls[runner],
                    "run_seconds": round(inner["seconds"], 2),
                    "pieces_per_minute": round(60 * args.num_pieces / wall, 3), "timings": inner["timings"]}
    if runner == "ray":
      runs[runner]["progress_lines"] = [l for l in proc.stderr.splitlines() if l.startswith("[ray] ")][-3:]
  summary = json.load(open(os.path.join(work, "local", "summary.json")))
  audio = {}
  for name in os.listdir(os.path.join(work, "ray", "asr")):
    if name.startswith("summary-"):
      s = json.load(open(os.path.join(work, "ray", "asr", name)))
      audio[s["piece"]] = s["audio_seconds"]
  per_piece = collections.defaultdict(float)
  for t in runs["ray"]["timings"]:
    per_piece[t["piece"]] += t["seconds"]
  costs = [per_piece[p] / audio[p] for p in sorted(per_piece) if audio.get(p)]
  return {"utterances": summary["in"], "written": summary["written"], "audio_seconds": round(sum(audio.values()), 1),
          "num_pieces": args.num_pieces, "local": runs["local"], "ray": runs["ray"],
          "ray_overhead_seconds": round(runs["ray"]["wall_seconds"] - runs["local"]["wall_seconds"], 2),
          "ray_over_local": round(runs["ray"]["wall_seconds"] / runs["local"]["wall_seconds"], 3),
          "identical_outputs": _digest(os.path.join(work, "local")) == _digest(os.path.join(work, "ray")),
          "cost_per_audio_second": {"median": round(statistics.median(costs), 4),
                                    "min": round(min(costs), 4), "max": round(max(costs), 4)}}


# ---------------------------------------------------------------------------------------------------
# 2. The simulation.


def piece_costs(rng: random.Random, pieces: int, piece_seconds: float, cost: float, sigma: float) -> list[float]:
  """Seconds of work per piece: audio x cost per audio second x a log-normal factor of mean 1."""
  return [piece_seconds * cost * rng.lognormvariate(-sigma * sigma / 2, sigma) for _ in range(pieces)]


def preemptions(rng: random.Random, hosts: int, fraction: float, horizon: float) -> dict[int, float]:
  """Host -> the time it is preempted (once), for round(fraction * hosts) hosts."""
  chosen = rng.sample(range(hosts), round(fraction * hosts))
  return {h: rng.uniform(0, horizon) for h in chosen}


def static_makespan(costs: list[float], hosts: int, preempt: dict[int, float], down: float) -> float:
  """Host i runs pieces j % hosts == i in order; a preemption loses the running piece's progress and `down`."""
  ends = []
  for h in range(hosts):
    mine = costs[h::hosts]
    t = 0.0
    hit = preempt.get(h)
    for c in mine:
      if hit is not None and t <= hit < t + c:
        t = hit + down  # the piece starts again when the host is back
        hit = None
      t += c
    ends.append(t)
  return max(ends)


def dynamic_makespan(costs: list[float], hosts: int, preempt: dict[int, float], down: float) -> float:
  """A free host takes the next piece in order; a preempted piece goes back to the front of the queue at the
  moment of the preemption, and its host returns `down` later."""
  queue = collections.deque(range(len(costs)))
  events = [(0.0, 0, "free", h, -1) for h in range(hosts)]  # (time, seq, kind, host, piece)
  heapq.heapify(events)
  seq, idle, finish, pending = hosts, [], 0.0, dict(preempt)
  while events:
    t, _, kind, host, piece = heapq.heappop(events)
    if kind == "requeue":
      queue.appendleft(piece)
    else:
      idle.append(host)
      if piece >= 0:
        finish = max(finish, t)
    while idle and queue:
      h = idle.pop()
      hit = pending.get(h)
      if hit is not None and hit < t:  # preempted while idle
        del pending[h]
        if t < hit + down:  # still gone: back later, the piece stays queued
          seq += 1
          heapq.heappush(events, (hit + down, seq, "free", h, -1))
          continue
        hit = None
      p = queue.popleft()
      if hit is not None and hit < t + costs[p]:
        del pending[h]
        seq += 2
        heapq.heappush(events, (hit, seq - 1, "requeue", h, p))
        heapq.heappush(events, (hit + down, seq, "free", h, -1))
      else:
        seq += 1
        heapq.heappush(events, (t + costs[p], seq, "free", h, p))
  return finish


def simulate(args, cost: float) -> dict:
  rows = []
  for num_pieces, sigma, fraction in itertools.product((args.pieces, 4 * args.pieces), (0.25, 0.5, 1.0),
                                                       (0.0, 0.1)):
    piece_seconds = args.hours * 3600 / num_pieces
    static, dynamic, ideal = [], [], []
    for seed in range(args.seeds):
      rng = random.Random(seed)
      costs = piece_costs(rng, num_pieces, piece_seconds, cost, sigma)
      total = sum(costs)
      preempt = preemptions(rng, args.hosts, fraction, total / args.hosts)
      static.append(static_makespan(costs, args.hosts, preempt, args.down_hours * 3600))
      dynamic.append(dynamic_makespan(costs, args.hosts, preempt, args.down_hours * 3600))
      ideal.append(total / args.hosts)
    h = lambda xs: round(statistics.median(xs) / 3600, 2)  # noqa: E731
    rows.append({"pieces": num_pieces, "sigma": sigma, "preempted": fraction, "ideal_hours": h(ideal),
                 "static_hours": h(static), "dynamic_hours": h(dynamic),
                 "static_over_dynamic": round(statistics.median(s / d for s, d in zip(static, dynamic)), 3)})
  return {"hours": args.hours, "pieces": args.pieces, "hosts": args.hosts, "down_hours": args.down_hours,
          "seeds": args.seeds, "cost_per_audio_second": cost, "rows": rows}


# Chain seconds per audio second measured by this script's chain run (benchmarks/README.md): the simulation's
# default when the chain is not run.
MEASURED_COST = 0.17


def main(argv=None):
  args = _parse(argv)
  if args._worker:
    return _worker(args)
  if args.smoke:
    args.num, args.num_pieces = 8, 4
    args.hours, args.pieces, args.hosts, args.seeds = 300.0, 64, 8, 2
  os.makedirs(args.out, exist_ok=True)
  result = {"benchmark": "label_ray", "setup": {"smoke": args.smoke, "cpus": os.cpu_count(),
                                                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
  if not args.simulate_only:
    with tempfile.TemporaryDirectory(prefix="lanser_label_ray_") as work:
      result["chain"] = c = chain(args, work)
    print(f"chain: {c['utterances']} demo utterances ({c['audio_seconds']} s of audio), {c['num_pieces']} pieces, "
          f"{os.cpu_count()} CPUs; identical outputs: {c['identical_outputs']}")
    print(f"| runner | wall s (median of {args.rounds}) | each round | pieces/min |")
    print("|---|---|---|---|")
    for runner in ("local", "ray"):
      print(f"| {runner} | {c[runner]['wall_seconds']} | {c[runner]['rounds_wall_seconds']} | "
            f"{c[runner]['pieces_per_minute']} |")
    print(f"Ray's overhead: {c['ray_overhead_seconds']} s ({c['ray_over_local']}x the local wall time); chain "
          f"cost per audio second under Ray: median {c['cost_per_audio_second']['median']} "
          f"(min {c['cost_per_audio_second']['min']}, max {c['cost_per_audio_second']['max']})")
  cost = args.cost or result.get("chain", {}).get("cost_per_audio_second", {}).get("median") or MEASURED_COST
  result["simulation"] = sim = simulate(args, cost)
  print(f"\nsimulation: {sim['hours']:g} h of audio in {sim['pieces']} (and 4x as many) pieces on {sim['hosts']} hosts, "
        f"{cost:g} s of work per audio second, preempted hosts gone {sim['down_hours']:g} h; median of "
        f"{sim['seeds']} draws")
  print("| pieces | sigma | hosts preempted | ideal h | static j % N h | dynamic h | static / dynamic |")
  print("|---|---|---|---|---|---|---|")
  for r in sim["rows"]:
    print(f"| {r['pieces']} | {r['sigma']} | {r['preempted']:.0%} | {r['ideal_hours']} | {r['static_hours']} | "
          f"{r['dynamic_hours']} | {r['static_over_dynamic']} |")
  with open(os.path.join(args.out, "label_ray.json"), "w") as f:
    json.dump(result, f, indent=1)
  print(f"\nwrote {os.path.join(args.out, 'label_ray.json')}")


if __name__ == "__main__":
  main()
