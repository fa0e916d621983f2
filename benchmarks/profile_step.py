r"""Where the JAX train step spends its time on XLA:CPU: one profiled step, grouped by kind of XLA kernel.

  . .venv/bin/activate
  python benchmarks/profile_step.py --out=/tmp/lanser_prof            # ResNet-50, batch 16, 300 x 64 (~1 min)
  python benchmarks/profile_step.py --smoke --out=/tmp/lanser_prof    # tiny model, seconds

Builds the step exactly as benchmarks/train_step.py's `jax_ynn` variant does (its worker code, same XLA flag),
times a few steps, then records one step with `jax.profiler` (XLA:CPU emits a trace event per kernel with
`--xla_cpu_enable_xprof_traceme=true`, which this script adds) and sums the events by kernel kind
("transpose_copy_fusion", "ynn_fusion", "convolution", ...) and per XLA worker thread. Convolutions that
XLA hands to Eigen run as tasks on the worker threads without events of their own: the time of a worker
thread that no event covers ("unattributed") is mostly convolution arithmetic.

Prints a table and writes <out>/profile_step.json plus the trace (open it in Perfetto). A measurement,
never a pass/fail test.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRACEME_FLAG = "--xla_cpu_enable_xprof_traceme=true"


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="/tmp/lanser_prof")
  p.add_argument("--model", default="resnet50")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--frames", type=int, default=300)
  p.add_argument("--mel_bins", type=int, default=64)
  p.add_argument("--num_classes", type=int, default=7)
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--steps", type=int, default=3, help="timed steps before the profiled one")
  p.add_argument("--top", type=int, default=12, help="kernel kinds to print")
  p.add_argument("--smoke", action="store_true", help="tiny model, 1 timed step")
  args = p.parse_args(argv)
  if args.smoke:
    args.model, args.batch, args.frames, args.mel_bins, args.steps = "tiny", 4, 64, 32, 1
  return args


def kernel_kind(name: str) -> str:
  """'transpose_copy_fusion.119' -> 'transpose_copy_fusion'."""
  return re.sub(r"\.\d+$", "", name)


def summarise_trace(path: str) -> dict:
  """Sums the XLA kernel events of a Perfetto trace by kind and by worker thread."""
  with gzip.open(path) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
  kinds, counts = collections.Counter(), collections.Counter()
  per_thread = collections.defaultdict(list)
  for e in events:
    if e.get("ph") != "X" or "dur" not in e:
      continue
    thread = threads.get((e["pid"], e["tid"]), "")
    if "Eigen" not in thread:  # XLA:CPU's worker threads; the Python thread only waits
      continue
    per_thread[thread].append(e)
    if not e["name"].startswith(("ThunkExecutor", "end:")):
      kinds[kernel_kind(e["name"])] += e["dur"]
      counts[kernel_kind(e["name"])] += 1
  workers = {}
  for thread, evs in per_thread.items():
    evs.sort(key=lambda e: e["ts"])
    start, stop = evs[0]["ts"], max(e["ts"] + e["dur"] for e in evs)
    covered, end = 0.0, start  # union of the kernels' intervals (events nest inside ThunkExecutor)
    for e in evs:
      if e["name"].startswith("ThunkExecutor"):
        continue
      lo, hi = max(e["ts"], end), e["ts"] + e["dur"]
      if hi > lo:
        covered, end = covered + hi - lo, hi
    workers[thread] = {"span_ms": (stop - start) / 1e3, "kernel_events_ms": covered / 1e3,
                       "unattributed_ms": (stop - start - covered) / 1e3}
  total = sum(w["span_ms"] for w in workers.values())
  by_kind = {k: {"ms": v / 1e3, "count": counts[k], "share_of_worker_time": v / 1e3 / total if total else None}
             for k, v in kinds.most_common()}
  return {"by_kind": by_kind, "workers": workers, "worker_time_ms": total}


def main(argv=None) -> dict:
  args = parse_args(argv)
  sys.path.insert(0, HERE)
  import train_step  # noqa: E402 -- the benchmark whose jax_ynn variant this profiles

  os.environ["XLA_FLAGS"] = f"{train_step.YNN_FLAG} {TRACEME_FLAG}"  # before jax is imported
  sys.path.insert(0, os.path.dirname(HERE))
  import jax

  step, state, batch, info = train_step.build_jax_step(args.model, args.dtype, args.batch, args.frames,
                                                       args.mel_bins, args.num_classes)
  state = step(state, batch)  # warm-up
  seconds = []
  for _ in range(args.steps):
    t = time.perf_counter()
    state = step(state, batch)
    seconds.append(time.perf_counter() - t)
  trace_dir = os.path.join(args.out, "trace")
  jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
  state = step(state, batch)
  jax.profiler.stop_trace()
  trace = sorted(glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "perfetto_trace.json.gz")))[-1]
  summary = summarise_trace(trace)
  result = {"benchmark": "profile_step", "model": args.model, "batch": args.batch, "frames": args.frames,
            "mel_bins": args.mel_bins, "dtype": args.dtype, "xla_flags": os.environ["XLA_FLAGS"],
            "threads": len(os.sched_getaffinity(0)), "load_avg": os.getloadavg(),
            "seconds_per_step": statistics.median(seconds), "flops_per_step": info["flops_per_step"],
            "trace": trace, **summary}

  print(f"{args.model} {args.dtype}, batch {args.batch}, {args.frames} x {args.mel_bins}: "
        f"{result['seconds_per_step']:.2f} s/step, {result['threads']} threads; "
        f"the profiled step spans {summary['worker_time_ms']:.0f} ms of XLA worker-thread time")
  print(f"{'kernel kind':34s}{'ms':>9s}{'count':>7s}{'share':>8s}")
  for kind, row in list(summary["by_kind"].items())[:args.top]:
    print(f"{kind:34s}{row['ms']:9.1f}{row['count']:7d}{row['share_of_worker_time']:8.1%}")
  for thread, w in summary["workers"].items():
    print(f"{thread}: span {w['span_ms']:.0f} ms, kernel events {w['kernel_events_ms']:.0f} ms, "
          f"unattributed (Eigen convolution tasks, idle) {w['unattributed_ms']:.0f} ms")
  from lanser_jax.input_pipeline import records
  path = os.path.join(args.out, "profile_step.json")
  records.write_json(path, result)
  print(f"wrote {path}")
  return result


if __name__ == "__main__":
  main()
