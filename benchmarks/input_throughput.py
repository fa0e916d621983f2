r"""Does the Grain input pipeline keep an accelerator fed? Examples/s per CPU core, baseline and current, same run.

  . .venv/bin/activate
  python benchmarks/input_throughput.py --out=/tmp/lanser_bench                  # ~2 min on 2 idle cores
  python benchmarks/input_throughput.py --smoke --out=/tmp/lanser_bench_smoke    # seconds: tiny data and model

Data: a generated feature folder (lanser_jax.input_pipeline.synthetic; --records utterances of 1-15 s = 100-1500
frames, 64 mel bins, --shards ArrayRecord shards, record format 2, uncompressed), written once and reused
from --data_dir. Pipeline rows, batch 256 of 300-frame crops, shuffled over the shards, 0 / 1 / 2 Grain
worker processes, each `pipeline.train_dataset(on_device=True)` as training builds it (one map per batch
reading records one at a time, float16 crops + lengths; normalisation, cast and mask run in the jitted step):
  new_<w>_workers  this checkout's pipeline: the project's sampler (input_pipeline/sampler.py)
  old_<w>_workers  the same call in a checkout of --baseline_commit (default: the last commit with the
                   Grain-order replica, shuffle.py + crop_draws.py), extracted with `git archive` into
                   <out>/baseline_<commit> (or --baseline=DIR, a folder holding such a `lanser_jax/`;
                   --baseline=none: no old rows)
Each kind runs in its own process (`--pipeline_worker`, with its checkout first on the path), started once and
asked for one timed window per row and round. Rows are interleaved in every round (the order rotates), so a
shared machine's load falls on all alike; medians over rounds. "Per core" is examples per CPU-second of that
process and its Grain worker processes in the timed window (so it does not depend on how many cores the
machine lets us have), beside the wall-clock rate, and split into the main process's and the workers' share.
Each row's consumer copies every batch's features once into a staging array, as the host->device copy
reads them (a worker's batch arrives in shared memory the main process has not touched). The window opens
after --warmup_batches per worker (a worker's first batches carry its start) and lasts at least --batches
and --min_seconds: a window of 8 batches after 2 counted the workers' start and the batches their buffers
ran ahead (measured: 5,535 instead of 11,436 examples per core with 2 workers, same code, idle machine).
Stage table: single-threaded microtimings (CPU time) of each step of the current map and its sampler per
example (record read, decode, epoch order, crop draw, crop copy) and the worker IPC of a batch, with the page
faults it takes; rows in parentheses are alternatives not taken. "other" is the rest of the measured
per-core cost (Grain, the read thread, Python).
Train-step row: the ResNet-50 step of benchmarks/train_step.py (--step_variant, default jax_ynn) in its own
process at --step_batch (on this CPU a 256-batch step would take half a minute), in the same rounds.
Fed rows (--feed_workers=0,2,...): that same step worker fed by the current pipeline as train_and_evaluate
feeds it (Grain batches of float16 crops at --step_batch through train.DevicePrefetch, steps dispatched
without waiting), --feed_steps timed after each worker's warm-up: examples/s, the share of the step's own
rate on a batch already on the device ('of step alone': 1.0 means the pipeline never kept the step waiting),
and the host CPU per example of the step's process and of its Grain workers.
Cores table: host cores each pipeline needs per A100 and per 8xA100 node, from NVIDIA's published ResNet-50
v1.5 training throughput scaled to our crop's pixels, and per H100 (an estimate: 2-3x the A100). Writes
<out>/input_throughput.json. A measurement, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# The checkout whose `lanser_jax` this process times: the repository, or in a baseline row's process (and its
# Grain workers, which inherit the variable) the baseline's. This folder itself goes off the path.
PACKAGE_ROOT_ENV = "LANSER_BENCH_PACKAGE_ROOT"
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.environ.get(PACKAGE_ROOT_ENV) or REPO)

from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from lanser_jax.input_pipeline import pipeline, records, synthetic  # noqa: E402


def _load_sibling(file: str, name: str):
  spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


# At import, also in Grain's worker processes, which unpickle pipeline_stages' classes by this module name.
step_bench = _load_sibling("train_step.py", "lanser_bench_train_step")  # worker protocol, interleaved rounds
stages_lib = _load_sibling("pipeline_stages.py", "lanser_bench_pipeline_stages")  # stage table, CPU clock

# Grain reads absl flags in its worker processes; this script parses its own arguments with argparse.
flags.FLAGS.mark_as_parsed()
GOAL_PER_CORE = 5000.0  # examples per CPU-second (issues #15, #25)
# The last commit whose pipeline ordered batches as Grain does (shuffle.py, crop_draws.py): the old rows.
BASELINE_COMMIT = "bb4e83c4dbfd449b7cf5f59b59b6a90be6e1db06"
GOAL_X_STEP = 5.0  # and at least 5x what this machine's step consumes
# NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Training performance:
# NVIDIA DGX A100 (8x A100 80GB)", mixed precision, 224x224 images, pytorch-21.03 NGC container.
A100_IMG_S = {"1xA100": 2470.0, "8xA100": 16621.0}
H100_OVER_A100 = (2.0, 3.0)  # an estimate, not a published ResNet-50 figure


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="/tmp/lanser_bench", help="folder for input_throughput.json")
  p.add_argument("--data_dir", default="", help="default: <out>/pipeline_data_v2_<records>x<frames>x<bins>")
  p.add_argument("--records", type=int, default=2048)
  p.add_argument("--min_frames", type=int, default=100)
  p.add_argument("--max_frames", type=int, default=1500)
  p.add_argument("--shards", type=int, default=8)
  p.add_argument("--mel_bins", type=int, default=64)
  p.add_argument("--num_classes", type=int, default=7)
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--frames", type=int, default=300, help="crop length")
  p.add_argument("--workers", default="0,1,2", help="Grain worker-process counts to time")
  p.add_argument("--pipelines", default="old,new")
  p.add_argument("--baseline", default="", help="folder holding the old rows' lanser_jax/ (default: "
                 "<out>/baseline_<commit>, extracted from --baseline_commit); 'none': no old rows")
  p.add_argument("--baseline_commit", default=BASELINE_COMMIT, help="commit of this repository the old rows run")
  p.add_argument("--pipeline_worker", default="", help=argparse.SUPPRESS)  # internal: time rows of one kind
  p.add_argument("--batches", type=int, default=8, help="timed batches per pipeline row per round, at least")
  p.add_argument("--min_seconds", type=float, default=1.0, help="and timed for at least this long")
  p.add_argument("--warmup_batches", type=int, default=4, help="per worker process (at least one)")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--stage_examples", type=int, default=512, help="records in the per-stage microtimings")
  p.add_argument("--model", default="resnet50")
  p.add_argument("--step_variant", default="jax_ynn", help="a train_step.py JAX variant, or 'none'")
  p.add_argument("--step_batch", type=int, default=16, help="train-step batch (256 on an accelerator)")
  p.add_argument("--steps", type=int, default=2, help="timed train steps per round")
  p.add_argument("--threads", type=int, default=0, help="train-step worker threads; 0: all CPUs")
  p.add_argument("--feed_workers", default="", help="comma list of worker counts: the train step fed by the "
                 "new pipeline as training feeds it (a row each; '' = none; on an accelerator, e.g. 0,2,4,8)")
  p.add_argument("--feed_steps", type=int, default=50, help="timed steps of each fed row")
  p.add_argument("--smoke", action="store_true", help="tiny data and model, 1 round")
  args = p.parse_args(argv)
  if args.smoke:
    args.records, args.min_frames, args.max_frames, args.shards, args.mel_bins = 64, 40, 200, 2, 32
    # 40 timed batches (320 examples): the new pipeline needs ~0.15 ms of CPU per example, and 3 batches
    # stayed under the CPU clock's 10 ms tick, so the per-core figure read as 0 (None) now and then.
    args.batch, args.frames, args.workers, args.batches, args.warmup_batches = 8, 64, "0,1", 40, 1
    args.min_seconds = 0.2
    args.rounds, args.model, args.steps, args.step_batch, args.stage_examples = 1, "tiny", 2, 4, 32
    # 100 steps: the worker's CPU time for fewer tiny batches can stay under the CPU clock's 10 ms tick
    args.feed_workers, args.feed_steps = args.feed_workers or "0,1", 100
    if args.step_variant == "jax_ynn":
      args.step_variant = "jax_default"  # the variant train_step.py --smoke also compiles (shared cache)
  args.data_dir = args.data_dir or os.path.join(
      args.out, f"pipeline_data_v{records.FORMAT_VERSION}_{args.records}x{args.min_frames}-{args.max_frames}x"
      f"{args.mel_bins}")
  args.threads = args.threads or len(os.sched_getaffinity(0))
  return args


def ensure_data(args) -> dict:
  """Writes the feature folder unless a complete one (dataset.json is written last) is there."""
  info_path = os.path.join(args.data_dir, "dataset.json")
  if not os.path.exists(info_path):
    print(f"writing {args.records} records of {args.min_frames}-{args.max_frames} frames to "
          f"{args.data_dir} ...", flush=True)
    t = time.perf_counter()
    synthetic.write_synthetic(args.data_dir, num_classes=args.num_classes, mel_bins=args.mel_bins,
                              num_train=args.records, num_eval=args.num_classes,
                              min_frames=args.min_frames, max_frames=args.max_frames,
                              num_shards=args.shards, soft=False, seed=0)
    print(f"  done in {time.perf_counter() - t:.1f} s", flush=True)
  info = records.read_dataset_info(args.data_dir)  # refuses a folder of another record format
  shards = records.list_shards(args.data_dir, "train")
  return {"dir": args.data_dir, "records": info["splits"]["train"]["num_examples"], "shards": len(shards),
          "bytes": sum(os.path.getsize(p) for p in shards), "label_names": info["label_names"],
          "writer_options": info["splits"]["train"]["writer_options"]}


def ensure_baseline(args) -> tuple[str | None, str]:
  """(folder holding the old rows' lanser_jax/, its description), or (None, why there are no old rows)."""
  if args.baseline == "none":
    return None, "--baseline=none"
  if args.baseline:
    root = os.path.abspath(args.baseline)  # the row's process runs in the repository
    if not os.path.exists(os.path.join(root, "lanser_jax", "__init__.py")):
      raise SystemExit(f"--baseline={args.baseline}: no lanser_jax/__init__.py in it; give a checkout's root")
    return root, root
  folder = os.path.join(args.out, f"baseline_{args.baseline_commit[:12]}")
  if not os.path.exists(os.path.join(folder, "lanser_jax", "__init__.py")):
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
      archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", args.baseline_commit, "lanser_jax"],
                               capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
      shutil.rmtree(tmp)
      detail = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) else e
      return None, (f"commit {args.baseline_commit[:12]} could not be extracted from {REPO} ({detail}); pass "
                    "--baseline=DIR, a checkout of it")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
      tar.extractall(tmp, filter="data")
    os.replace(tmp, folder)
  return folder, f"commit {args.baseline_commit[:12]} ({folder})"


class PipelineRow:
  """One pipeline at one worker count, in the pipeline worker process; each call builds a fresh iterator
  (new seed), warms it up and times it."""

  def __init__(self, args, num_workers: int, num_classes: int, clock_type):
    self.args, self.num_workers, self.num_classes, self.clock_type = args, num_workers, num_classes, clock_type
    self.normalizer = pipeline.Normalizer.from_file(os.path.join(args.data_dir, "stats.json"))
    self.calls = 0

  def __call__(self) -> dict:
    a = self.args
    self.calls += 1
    clock = self.clock_type()
    t0 = time.perf_counter()
    it = iter(pipeline.train_dataset(a.data_dir, "train", global_batch_size=a.batch, crop_frames=a.frames,
                                     normalizer=self.normalizer, num_classes=self.num_classes, seed=self.calls,
                                     num_workers=self.num_workers, on_device=True))
    # What a train loop's host side does with each batch: the host->device copy reads every page of it (a
    # worker's batch arrives in shared memory the consumer has not touched yet).
    staging = None

    def consume(batch):
      nonlocal staging
      x = batch["log_mel"]
      if staging is None:
        staging = np.empty(x.shape, x.dtype)
      np.copyto(staging, x, casting="no")

    try:
      # Warm-up per worker: each worker's first batches carry its start (imports, opening the shards), and a
      # timed window must begin with every worker in its steady state.
      for _ in range(a.warmup_batches * max(1, self.num_workers)):
        batch = next(it)
        consume(batch)
      startup = time.perf_counter() - t0
      t, cpu = time.perf_counter(), clock.split()
      n = 0
      # At least --batches and --min_seconds: a window of a few batches is dominated by what the workers'
      # buffers held when it opened (up to ~6 batches per worker run ahead).
      while n < a.batches or time.perf_counter() - t < a.min_seconds:
        batch = next(it)
        consume(batch)
        n += 1
      seconds = (time.perf_counter() - t) / n
      main, children = (end - start for start, end in zip(cpu, clock.split()))
    finally:
      close = getattr(it, "close", None)
      if close:
        close()
    if batch["log_mel"].shape != (a.batch, a.frames, a.mel_bins):
      raise RuntimeError(f"pipeline batch has shape {batch['log_mel'].shape}")
    return {"seconds": seconds, "startup_s": startup, "batches": n,
            "cpu_s_per_example_main": main / (n * a.batch), "cpu_s_per_example_workers": children / (n * a.batch)}


def pipeline_worker(args) -> None:
  """The process that times one kind's rows (`--pipeline_worker=old|new`): one JSON command a line ("row",
  workers), one answer each (train_step.py's protocol)."""
  import lanser_jax
  root = os.path.dirname(os.path.dirname(os.path.abspath(lanser_jax.__file__)))
  num_classes = len(records.read_json(os.path.join(args.data_dir, "dataset.json"))["label_names"])
  rows = {}

  def row(cmd: dict) -> dict:
    w = int(cmd["workers"])
    rows.setdefault(w, PipelineRow(args, w, num_classes, stages_lib.CpuClock))
    return rows[w]()

  step_bench.answer({"ok": True, "kind": args.pipeline_worker, "package_root": root})
  step_bench.serve(None, None, {"row": row})


def start_pipeline_worker(args, kind: str, root: str):
  """A pipeline worker process whose `lanser_jax` is `root`'s (its Grain workers inherit that)."""
  argv = [sys.executable, os.path.abspath(__file__), f"--pipeline_worker={kind}", f"--out={args.out}",
          f"--data_dir={args.data_dir}",
          *[f"--{k}={getattr(args, k)}" for k in ("batch", "frames", "mel_bins", "batches", "min_seconds",
                                                   "warmup_batches")]]
  # First on the path; what the caller put there (e.g. accelerator_suite.sh's wheels) stays after it.
  env = {**os.environ, PACKAGE_ROOT_ENV: root,
         "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH", "")]))}
  return step_bench.Worker(f"pipeline_{kind}", argv, env)


# ---------------------------------------------------------------------------------------------------
# Run, summarise, print.


def cores_table(per_core: dict[str, float], crop_pixels: int) -> dict[str, dict]:
  """Host cores each pipeline needs to feed each accelerator setup (consumption in examples/s)."""
  scale = 224 * 224 / crop_pixels  # a ResNet-50 step's cost is about proportional to its input's pixels
  demand = {f"{k} (NVIDIA)": v * scale for k, v in A100_IMG_S.items()}
  for k, v in A100_IMG_S.items():
    lo, hi = H100_OVER_A100
    demand[k.replace("A100", "H100") + " (estimate)"] = v * scale * (lo + hi) / 2
  return {name: {"examples_per_s": d, **{f"cores_{p}": d / rate for p, rate in per_core.items() if rate}}
          for name, d in demand.items()}


def feed_rows(args, workers: dict, skipped: dict) -> dict[str, dict]:
  """The train-step worker fed by the new pipeline (train_step.feed_steps), one row per --feed_workers."""
  counts = [int(w) for w in args.feed_workers.split(",") if w.strip()]
  rows = {}
  for name, w in workers.items():
    for count in counts:
      key = f"fed_{count}_workers"
      try:
        r = w.ask(op="feed", data_dir=args.data_dir, workers=count, steps=args.feed_steps)
      except RuntimeError as e:
        print(f"  {key}: FAILED: {e}", flush=True)
        skipped[key] = str(e)
        continue
      rows[key] = {"kind": "fed", "variant": name, "num_workers": count, "batch": args.step_batch,
                   "seconds_per_step": r["seconds_per_step"], "examples_per_s": args.step_batch / r["seconds_per_step"],
                   "steps": r["steps"], "startup_s": r["startup_s"],
                   "cpu_us_per_example_main": 1e6 * r["cpu_s_per_step_main"] / args.step_batch,
                   "cpu_us_per_example_workers": 1e6 * r["cpu_s_per_step_workers"] / args.step_batch}
      print(f"  {key}: {rows[key]['examples_per_s']:.1f} ex/s", flush=True)
  return rows


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.pipeline_worker:
    pipeline_worker(args)
    return {}
  data = ensure_data(args)
  num_classes = len(data["label_names"])
  worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
  kinds = [k for k in args.pipelines.split(",") if k.strip()]
  roots, skipped, baseline = {}, {}, None
  if "old" in kinds:
    root, baseline = ensure_baseline(args)
    if root:
      roots["old"] = root
    else:
      skipped.update({f"old_{w}_workers": baseline for w in worker_counts})
  if "new" in kinds:
    roots["new"] = REPO
  load_start = os.getloadavg()
  print(f"input pipeline: {data['records']} records in {data['shards']} shards "
        f"({data['bytes'] / 2**20:.0f} MiB, {data['writer_options']}), batch {args.batch} x {args.frames} frames x "
        f"{args.mel_bins} bins; worker processes {worker_counts}; {os.cpu_count()} CPUs, load average "
        f"{load_start[0]:.2f}{' (a loaded machine: other jobs share these cores)' if load_start[0] > 1 else ''}",
        flush=True)
  print(f"  new: this checkout ({REPO}); old: " + (baseline if "old" in roots else f"SKIPPED: {baseline}"),
        flush=True)
  print("per-stage microtimings ...", flush=True)
  stages = stages_lib.stage_costs(args)
  in_place = stages_lib.in_place_costs(args)
  fault = stages["(worker IPC: page faults per example, x the cost of one below)"]["fault_us"]

  pipelines, workers, info, extra = {}, {}, {}, {}
  timings: dict[str, list[dict]] = {}
  try:
    for kind, root in roots.items():  # each kind in its own process, its checkout first on the path
      pipelines[kind] = start_pipeline_worker(args, kind, root)
      ready = pipelines[kind].read()
      if os.path.realpath(ready["package_root"]) != os.path.realpath(root):
        raise RuntimeError(f"pipeline worker {kind} imported lanser_jax from {ready['package_root']}, not {root}")
    for w in worker_counts:
      for kind in pipelines:
        name = f"{kind}_{w}_workers"
        timings[name] = []

        def row(kind=kind, w=w, name=name) -> float:
          r = pipelines[kind].ask(op="row", workers=w)
          timings[name].append(r)
          return r["seconds"]
        extra[name] = row
    if args.step_variant != "none":
      step_args = step_bench.parse_args([
          f"--model={args.model}", f"--batch={args.step_batch}", f"--frames={args.frames}",
          f"--mel_bins={args.mel_bins}", f"--num_classes={num_classes}", f"--threads={args.threads}",
          f"--variants={args.step_variant}"])
      workers, info, step_skipped = step_bench.start_workers([args.step_variant], step_args)
      skipped.update(step_skipped)
      for name, w in workers.items():  # seconds per pipeline-sized batch, so that rounds print one unit
        extra[f"train_step_{name}"] = (lambda w=w: statistics.mean(w.ask(op="run", steps=args.steps)["seconds"])
                                       * args.batch / args.step_batch)
    per_round = step_bench.run_rounds({}, args.steps, args.rounds, args.batch, skipped, extra=extra)
    fed = feed_rows(args, workers, skipped)
    memory = {name: w.ask(op="stats") for name, w in workers.items()}
  finally:
    for w in [*workers.values(), *pipelines.values()]:
      w.close()
  load_end = os.getloadavg()

  result_rows, step_rate = {}, None
  for name, w in workers.items():
    key = f"train_step_{name}"
    if key not in per_round:
      continue
    s = statistics.median(per_round[key]) * args.step_batch / args.batch
    step_rate = args.step_batch / s
    result_rows[key] = {
        "kind": "train_step", "variant": name, "batch": args.step_batch, "seconds_per_batch": s,
        "examples_per_s": step_rate, "peak_rss_mib": memory[name]["peak_rss_mib"],
        "xla_flags": info[name]["xla_flags"], "dtype": info[name]["dtype"], "model": args.model}
  for name, row in fed.items():
    row["x_step_alone"] = row["examples_per_s"] / step_rate if step_rate else None
    result_rows[name] = row
  for name, rounds in timings.items():
    if name not in per_round:
      continue
    kind, w = name.split("_")[0], int(name.split("_")[1])
    s = statistics.median(per_round[name])
    rate = args.batch / s
    cpu = statistics.median(r["cpu_s_per_example_main"] + r["cpu_s_per_example_workers"] for r in rounds)
    result_rows[name] = {
        "kind": "pipeline", "pipeline": kind, "num_workers": w,
        "sampler": "Grain's order (shuffle.py, crop_draws.py)" if kind == "old" else "input_pipeline/sampler.py",
        "seconds_per_batch_rounds": per_round[name], "seconds_per_batch": s, "examples_per_s": rate,
        "cpu_ms_per_example": 1e3 * cpu, "examples_per_core_s": 1.0 / cpu if cpu > 0 else None,
        "cpu_us_per_example_main": 1e6 * statistics.median(r["cpu_s_per_example_main"] for r in rounds),
        "cpu_us_per_example_workers": 1e6 * statistics.median(r["cpu_s_per_example_workers"] for r in rounds),
        "timed_batches_rounds": [r["batches"] for r in rounds],
        "startup_s": statistics.median(r["startup_s"] for r in rounds),
        "x_train_step": rate / step_rate if step_rate else None,
        "meets_goal": (1.0 / cpu >= GOAL_PER_CORE and (step_rate is None or rate >= GOAL_X_STEP * step_rate))
        if cpu > 0 else None}

  print(f"\n{'row':<22}{'s/batch':>9}{'ex/s':>10}{'ex/core-s':>11}{'CPU ms/ex':>11}{'main µs':>9}"
        f"{'workers µs':>11}{'x step':>8}{'startup s':>11}")
  for name, r in result_rows.items():
    if r["kind"] == "fed":
      continue
    x = f"{r['x_train_step']:.1f}" if r.get("x_train_step") else "-"
    per_core = f"{r['examples_per_core_s']:.0f}" if r.get("examples_per_core_s") else "-"
    cpu = f"{r['cpu_ms_per_example']:.3f}" if "cpu_ms_per_example" in r else "-"
    startup = f"{r['startup_s']:.1f}" if "startup_s" in r else "-"
    main = f"{r['cpu_us_per_example_main']:.1f}" if "cpu_us_per_example_main" in r else "-"
    work = f"{r['cpu_us_per_example_workers']:.1f}" if r.get("num_workers") else "-"
    print(f"{name:<22}{r['seconds_per_batch']:>9.3f}{r['examples_per_s']:>10.1f}{per_core:>11}{cpu:>11}{main:>9}"
          f"{work:>11}{x:>8}{startup:>11}")

  if fed:
    print(f"\nthe train step fed by the new pipeline through DevicePrefetch, as training runs it (batch "
          f"{args.step_batch}); 'of step alone' = fed rate / the step's rate on a batch already on the device")
    print(f"{'row':<22}{'s/step':>9}{'ex/s':>10}{'of step alone':>15}{'host CPU µs/ex: main':>22}{'workers':>9}"
          f"{'startup s':>11}")
    for name, r in fed.items():
      x = f"{r['x_step_alone']:.2f}" if r.get("x_step_alone") else "-"
      print(f"{name:<22}{r['seconds_per_step']:>9.4f}{r['examples_per_s']:>10.1f}{x:>15}"
            f"{r['cpu_us_per_example_main']:>22.1f}{r['cpu_us_per_example_workers']:>9.1f}{r['startup_s']:>11.1f}")

  measured = {}
  for name, r in result_rows.items():  # per-core figure of each pipeline with the most workers (scales out)
    if r["kind"] == "pipeline" and r["examples_per_core_s"]:
      best = measured.get(r["pipeline"])
      if best is None or r["num_workers"] > best["num_workers"]:
        measured[r["pipeline"]] = r
  per_core = {k: r["examples_per_core_s"] for k, r in measured.items()}
  print(f"\n{'stage of the new map (CPU-µs per example, one thread)':<96}{'µs':>9}")
  for name, st in stages.items():
    print(f"{name:<96}{st['us']:>9.1f}")
  if "new" in measured:
    r = measured["new"]
    other = 1e3 * r["cpu_ms_per_example"] - sum(st["us"] for n, st in stages.items() if not n.startswith("("))
    stages[f"other (Grain, threads, Python; {r['num_workers']} workers)"] = {"us": other}
    print(f"{'other = the new row with the most workers, less the stages above':<96}{other:>9.1f}")
  print(f"one page fault on a fresh 4 KiB page: {fault:.2f} µs on this machine")
  print(f"\n{'the new map in place (CPU-µs per example, differences of cumulative batch loops)':<96}{'µs':>9}")
  for name, us in in_place.items():
    print(f"{name:<96}{us:>9.1f}")

  cores = cores_table(per_core, args.frames * args.mel_bins)
  print(f"\nhost cores to feed ResNet-50 (img/s scaled by 224x224 / {args.frames}x{args.mel_bins} pixels); "
        f"per-core rates: " + ", ".join(f"{k} {v:.0f} ex/core-s ({measured[k]['num_workers']} workers)"
                                         for k, v in per_core.items()))
  print(f"{'accelerator':<24}{'ex/s':>10}" + "".join(f"{'cores ' + k:>12}" for k in per_core))
  for name, c in cores.items():
    print(f"{name:<24}{c['examples_per_s']:>10.0f}" + "".join(f"{c['cores_' + k]:>12.1f}" for k in per_core))
  new_rows = {n: r for n, r in result_rows.items() if r["kind"] == "pipeline" and r["pipeline"] == "new"}
  if new_rows:
    lowest = min(r["examples_per_core_s"] or 0 for r in new_rows.values())
    print(f"goal: >= {GOAL_PER_CORE:.0f} examples/s per core with every worker count: new pipeline "
          + ", ".join(f"{r['examples_per_core_s'] or 0:.0f} ({r['num_workers']} workers)" for r in new_rows.values())
          + f" ({'met' if lowest >= GOAL_PER_CORE else 'NOT met'})")
  result = {"benchmark": "input_pipeline",
            "setup": {"batch": args.batch, "crop_frames": args.frames, "mel_bins": args.mel_bins,
                      "min_frames": args.min_frames, "max_frames": args.max_frames, "rounds": args.rounds,
                      "timed_batches": args.batches, "min_seconds": args.min_seconds,
                      "warmup_batches_per_worker": args.warmup_batches,
                      "step_batch": args.step_batch, "train_steps_per_round": args.steps, "model": args.model,
                      "threads": args.threads, "cpu_count": os.cpu_count(), "load_avg_start": load_start,
                      "load_avg_end": load_end, "loaded": load_start[0] > 1 or load_end[0] > 1,
                      "goal_examples_per_core_s": GOAL_PER_CORE, "goal_x": GOAL_X_STEP, "smoke": args.smoke,
                      "baseline": baseline if "old" in roots else None, "baseline_commit": args.baseline_commit,
                      "a100_source": "NVIDIA DeepLearningExamples PyTorch/Classification/ConvNets/"
                                     "resnet50v1.5/README.md, DGX A100, mixed precision",
                      "h100_over_a100_estimate": H100_OVER_A100},
            "data": data, "rows": result_rows, "stages_us_per_example": stages,
            "new_map_in_place_us_per_example": in_place, "cores_needed": cores, "skipped": skipped}
  path = os.path.join(args.out, "input_throughput.json")
  records.write_json(path, result)
  print(f"\nwrote {path}")
  return result


if __name__ == "__main__":
  main()
