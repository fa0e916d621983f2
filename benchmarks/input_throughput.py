r"""Does the Grain input pipeline keep an accelerator fed? Examples/s per CPU core, old and new, same run.

  . .venv/bin/activate
  python benchmarks/input_throughput.py --out=/tmp/lanser_bench                  # ~1.5 min on 2 idle cores
  python benchmarks/input_throughput.py --smoke --out=/tmp/lanser_bench_smoke    # seconds: tiny data and model

Data: a generated feature folder (lanser_jax.input_pipeline.synthetic; --records utterances of 1-15 s = 100-1500
frames, 64 mel bins, --shards ArrayRecord shards) as this code writes it (record format 2, uncompressed
shards), and a copy of the same examples as the project wrote them before (format 1, ArrayRecord's default
zstd:3 compression) for the old pipeline; written once and reused from --data_dir (and <data_dir>_format1).
Pipeline rows, batch 256 of 300-frame crops, shuffled over the shards, 0 / 1 / 2 Grain worker processes:
  old_<w>_workers  lanser_jax.input_pipeline.reference over the format-1 copy: per element decode + float32
                   normalisation + crop + pad, then Grain's batch (the pipeline training used before this
                   benchmark's issue, #15)
  new_<w>_workers  lanser_jax.input_pipeline.pipeline.train_dataset(on_device=True) over the format-2 folder, as
                   training builds it: Grain's shuffle order and the crop draws computed per batch, one map per
                   batch reading records one at a time, float16 crops + lengths (normalisation, cast and mask
                   run in the jitted step)
Old and new rows are interleaved in every round (the order rotates), so a shared machine's load falls on
both alike; medians over rounds. "Per core" is examples per CPU-second of this process and its Grain worker
processes in the timed window (so it does not depend on how many cores the machine lets us have), beside
the wall-clock rate, and split into the main process's and the workers' share. Each row's consumer copies
every batch's features once into a staging array, as the host->device copy reads them (a worker's batch
arrives in shared memory the main process has not touched). The window opens after --warmup_batches per
worker (a worker's first batches carry its start) and lasts at least --batches and --min_seconds: a window
of 8 batches after 2 counted the workers' start and the batches their buffers ran ahead (measured: 5,535
instead of 11,436 examples per core with 2 workers, same code, idle machine).
Stage table: single-threaded microtimings (CPU time) of each step of both paths per example (record read,
decode, shuffle order, crop draw, cast, normalisation, crop copy, padding, mask, batch stacking) and the
worker IPC of a batch of each kind, with the page faults it takes; rows in parentheses are alternatives not
adopted. "other" is the rest of the measured per-core cost (Grain, the read thread, Python); for the old
path it can be negative: its microtimings (one record at a time from cold buffers) overstate what its
pipeline pays in a steady run.
Train-step row: the ResNet-50 step of benchmarks/train_step.py (--step_variant, default jax_ynn) in its own
process at --step_batch (on this CPU a 256-batch step would take half a minute), in the same rounds.
Fed rows (--feed_workers=0,2,...): that same step worker fed by the new pipeline as train_and_evaluate feeds
it (Grain batches of float16 crops at --step_batch through train.DevicePrefetch, steps dispatched without
waiting), --feed_steps timed after each worker's warm-up: examples/s, the share of the step's own rate on a
batch already on the device ('of step alone': 1.0 means the pipeline never kept the step waiting), and the
host CPU per example of the step's process and of its Grain workers.
Cores table: host cores the new and the old pipeline need per A100 and per 8xA100 node, from NVIDIA's
published ResNet-50 v1.5 training throughput scaled to our crop's pixels, and per H100 (an estimate: 2-3x
the A100). Writes <out>/input_throughput.json. A measurement, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# This file's name would shadow the `input_pipeline` package: take its folder off the path, put the repo on.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.dirname(HERE))

from absl import flags  # noqa: E402
from array_record.python import array_record_module  # noqa: E402
import numpy as np  # noqa: E402

from lanser_jax.input_pipeline import pipeline, records, reference, synthetic  # noqa: E402


def _load_sibling(file: str, name: str):
  spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


step_bench = _load_sibling("train_step.py", "lanser_bench_train_step")  # its workers and interleaved rounds
stages_lib = _load_sibling("pipeline_stages.py", "lanser_bench_pipeline_stages")  # the stage table
CpuClock = stages_lib.CpuClock

# Grain reads absl flags in its worker processes; this script parses its own arguments with argparse.
flags.FLAGS.mark_as_parsed()
GOAL_PER_CORE = 5000.0  # examples per CPU-second (issue #15)
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
  args.format1_dir = args.data_dir.rstrip("/") + "_format1"
  args.threads = args.threads or len(os.sched_getaffinity(0))
  return args


def ensure_data(args) -> dict:
  """Writes the feature folder unless a complete one (dataset.json is written last) is there, and its
  format-1 copy for the old pipeline."""
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
  info = records.read_dataset_info(args.data_dir)
  if info["splits"]["train"].get("record_versions") != [records.FORMAT_VERSION]:
    raise SystemExit(f"{args.data_dir}: its train records are not all format {records.FORMAT_VERSION} (written "
                     f"before it?); give a new --data_dir so that the benchmark writes one")
  if not os.path.exists(os.path.join(args.format1_dir, "dataset.json")):
    print(f"writing its format-1 copy (the old pipeline's input) to {args.format1_dir} ...", flush=True)
    write_format1_copy(args.data_dir, args.format1_dir, info)
  out = {}
  for key, d in (("data", args.data_dir), ("data_format1", args.format1_dir)):
    shards = records.list_shards(d, "train")
    out[key] = {"dir": d, "records": records.read_dataset_info(d)["splits"]["train"]["num_examples"],
                "shards": len(shards), "bytes": sum(os.path.getsize(p) for p in shards),
                "label_names": info["label_names"],
                "writer_options": records.read_dataset_info(d)["splits"]["train"]["writer_options"]}
  return out


def write_format1_copy(src: str, dst: str, info: dict):
  """The same examples as this project wrote them before record format 2: format-1 records in shards of
  ArrayRecord's default compression, sidecars without the format keys."""
  os.makedirs(dst, exist_ok=True)
  for split in info["splits"]:
    for path in records.list_shards(src, split):
      reader = array_record_module.ArrayRecordReader(path, "readahead_buffer_size:0")
      out = os.path.join(dst, os.path.basename(path))
      writer = array_record_module.ArrayRecordWriter(out, records.LEGACY_WRITER_OPTIONS)
      for i in range(reader.num_records()):
        writer.write(records.encode_v1(records.decode(reader.read([i])[0])))
      writer.close()
      reader.close()
      sidecar = records.read_json(path.removesuffix(".array_record") + ".stats.json")
      records.write_json(out.removesuffix(".array_record") + ".stats.json",
                         records.RunningStats.from_json(sidecar).to_json())
  records.write_dataset_info(dst, info["label_names"], info["feature"], list(info["splits"]))


class PipelineRow:
  """One pipeline at one worker count; each call builds a fresh iterator (new seed), warms it up, times it."""

  def __init__(self, args, kind: str, num_workers: int, num_classes: int):
    self.args, self.kind, self.num_workers, self.num_classes = args, kind, num_workers, num_classes
    self.normalizer = pipeline.Normalizer.from_file(os.path.join(args.data_dir, "stats.json"))
    self.calls, self.startup_s, self.cpu_s_per_example, self.seconds = 0, [], [], []
    self.split_s_per_example, self.timed_batches = [], []  # (main process, workers) CPU-s per example

  def build(self):
    a = self.args
    kwargs = dict(global_batch_size=a.batch, crop_frames=a.frames, normalizer=self.normalizer,
                  num_classes=self.num_classes, seed=self.calls, num_workers=self.num_workers)
    if self.kind == "old":
      return iter(reference.train_dataset(a.format1_dir, "train", **kwargs))
    return iter(pipeline.train_dataset(a.data_dir, "train", on_device=True, **kwargs))

  def __call__(self) -> float:
    a = self.args
    self.calls += 1
    clock = CpuClock()
    t0 = time.perf_counter()
    it = self.build()
    # What a train loop's host side does with each batch: the host->device copy reads every page of it (a
    # worker's batch arrives in shared memory the consumer has not touched yet). The same copy in every row
    # (of the old pipeline's float32 features, twice the bytes, as it handed them over).
    staging = {}

    def consume(batch):
      x = batch["log_mel"]
      if x.dtype not in staging:
        staging[x.dtype] = np.empty(x.shape, x.dtype)
      np.copyto(staging[x.dtype], x, casting="no")

    try:
      # Warm-up per worker: each worker's first batches carry its start (imports, opening the shards), and a
      # timed window must begin with every worker in its steady state.
      for _ in range(a.warmup_batches * max(1, self.num_workers)):
        batch = next(it)
        consume(batch)
      self.startup_s.append(time.perf_counter() - t0)
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
      self.cpu_s_per_example.append((main + children) / (n * a.batch))
      self.split_s_per_example.append((main / (n * a.batch), children / (n * a.batch)))
      self.timed_batches.append(n)
    finally:
      close = getattr(it, "close", None)
      if close:
        close()
    if batch["log_mel"].shape != (a.batch, a.frames, a.mel_bins):
      raise RuntimeError(f"pipeline batch has shape {batch['log_mel'].shape}")
    self.seconds.append(seconds)
    return seconds


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
  datasets = ensure_data(args)
  data = datasets["data"]
  num_classes = len(data["label_names"])
  worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
  kinds = [k for k in args.pipelines.split(",") if k.strip()]
  load_start = os.getloadavg()
  print(f"input pipeline: {data['records']} records in {data['shards']} shards "
        f"({data['bytes'] / 2**20:.0f} MiB), batch {args.batch} x {args.frames} frames x {args.mel_bins} "
        f"bins; worker processes {worker_counts}; {os.cpu_count()} CPUs, load average {load_start[0]:.2f}"
        f"{' (a loaded machine: other jobs share these cores)' if load_start[0] > 1 else ''}", flush=True)
  old_data = datasets["data_format1"]
  print(f"  new pipeline: format {records.FORMAT_VERSION}, {data['writer_options']}; old pipeline: format 1, "
        f"{old_data['writer_options']} ({old_data['bytes'] / 2**20:.0f} MiB)", flush=True)
  print("per-stage microtimings ...", flush=True)
  stages = stages_lib.stage_costs(args)
  in_place = stages_lib.in_place_costs(args)
  fault = stages["(worker IPC: page faults per example, x the cost of one below)"]["fault_us"]
  rows = {f"{k}_{w}_workers": PipelineRow(args, k, w, num_classes) for w in worker_counts for k in kinds}

  workers, info, skipped, extra = {}, {}, {}, dict(rows)
  if args.step_variant != "none":
    step_args = step_bench.parse_args([
        f"--model={args.model}", f"--batch={args.step_batch}", f"--frames={args.frames}",
        f"--mel_bins={args.mel_bins}", f"--num_classes={num_classes}", f"--threads={args.threads}",
        f"--variants={args.step_variant}"])
    workers, info, skipped = step_bench.start_workers([args.step_variant], step_args)
    for name, w in workers.items():  # seconds per pipeline-sized batch, so that rounds print one unit
      extra[f"train_step_{name}"] = (lambda w=w: statistics.mean(w.ask(op="run", steps=args.steps)["seconds"])
                                     * args.batch / args.step_batch)
  try:
    per_round = step_bench.run_rounds({}, args.steps, args.rounds, args.batch, skipped, extra=extra)
    fed = feed_rows(args, workers, skipped)
    memory = {name: w.ask(op="stats") for name, w in workers.items()}
  finally:
    for w in workers.values():
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
  for name, row in rows.items():
    if name not in per_round:
      continue
    s = statistics.median(per_round[name])
    rate = args.batch / s
    cpu = statistics.median(row.cpu_s_per_example)
    result_rows[name] = {
        "kind": "pipeline", "pipeline": row.kind, "num_workers": row.num_workers,
        "seconds_per_batch_rounds": per_round[name], "seconds_per_batch": s, "examples_per_s": rate,
        "cpu_ms_per_example": 1e3 * cpu, "examples_per_core_s": 1.0 / cpu if cpu > 0 else None,
        "cpu_us_per_example_main": 1e6 * statistics.median(m for m, _ in row.split_s_per_example),
        "cpu_us_per_example_workers": 1e6 * statistics.median(w for _, w in row.split_s_per_example),
        "timed_batches_rounds": row.timed_batches,
        "startup_s": statistics.median(row.startup_s),
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
  print(f"\n{'stage (CPU-µs per example, one thread)':<104}{'old':>9}{'new':>9}")
  for name, s in stages.items():
    fmt = lambda v: f"{v:.1f}" if v is not None else "-"
    print(f"{name:<104}{fmt(s['old_us']):>9}{fmt(s['new_us']):>9}")
  timed = dict(stages)
  for kind, r in measured.items():
    known = sum(s[f"{kind}_us"] or 0 for n, s in timed.items() if not n.startswith("("))
    other = 1e3 * r["cpu_ms_per_example"] - known
    stages[f"other ({kind}: Grain, threads, Python; {r['num_workers']} workers)"] = {
        "old_us": other if kind == "old" else None, "new_us": other if kind == "new" else None}
    cells = [f"{other:.1f}" if kind == k else "" for k in ("old", "new")]
    print(f"{'other = measured per-core cost - the stages above (' + kind + ')':<104}{cells[0]:>9}{cells[1]:>9}")
  print(f"one page fault on a fresh 4 KiB page: {fault:.2f} µs on this machine")
  print(f"\n{'the new map in place (CPU-µs per example, differences of cumulative batch loops)':<104}{'new':>9}")
  for name, us in in_place.items():
    print(f"{name:<104}{us:>9.1f}")

  cores = cores_table(per_core, args.frames * args.mel_bins)
  print(f"\nhost cores to feed ResNet-50 (img/s scaled by 224x224 / {args.frames}x{args.mel_bins} pixels); "
        f"per-core rates: " + ", ".join(f"{k} {v:.0f} ex/core-s ({measured[k]['num_workers']} workers)"
                                         for k, v in per_core.items()))
  print(f"{'accelerator':<24}{'ex/s':>10}" + "".join(f"{'cores ' + k:>12}" for k in per_core))
  for name, c in cores.items():
    print(f"{name:<24}{c['examples_per_s']:>10.0f}" + "".join(f"{c['cores_' + k]:>12.1f}" for k in per_core))
  if "new" in measured:
    r = measured["new"]
    print(f"goal: >= {GOAL_PER_CORE:.0f} examples/s per core: new pipeline {r['examples_per_core_s']:.0f} "
          f"({'met' if r['examples_per_core_s'] >= GOAL_PER_CORE else 'NOT met'})"
          + (f"; x{r['x_train_step']:.0f} this machine's step" if r.get("x_train_step") else ""))
  result = {"benchmark": "input_pipeline",
            "setup": {"batch": args.batch, "crop_frames": args.frames, "mel_bins": args.mel_bins,
                      "min_frames": args.min_frames, "max_frames": args.max_frames, "rounds": args.rounds,
                      "timed_batches": args.batches, "min_seconds": args.min_seconds,
                      "warmup_batches_per_worker": args.warmup_batches,
                      "step_batch": args.step_batch, "train_steps_per_round": args.steps, "model": args.model,
                      "threads": args.threads, "cpu_count": os.cpu_count(), "load_avg_start": load_start,
                      "load_avg_end": load_end, "loaded": load_start[0] > 1 or load_end[0] > 1,
                      "goal_examples_per_core_s": GOAL_PER_CORE, "goal_x": GOAL_X_STEP, "smoke": args.smoke,
                      "a100_source": "NVIDIA DeepLearningExamples PyTorch/Classification/ConvNets/"
                                     "resnet50v1.5/README.md, DGX A100, mixed precision",
                      "h100_over_a100_estimate": H100_OVER_A100},
            "data": data, "data_format1": datasets["data_format1"], "rows": result_rows,
            "stages_us_per_example": stages, "new_map_in_place_us_per_example": in_place,
            "cores_needed": cores, "skipped": skipped}
  path = os.path.join(args.out, "input_throughput.json")
  records.write_json(path, result)
  print(f"\nwrote {path}")
  return result


if __name__ == "__main__":
  main()
