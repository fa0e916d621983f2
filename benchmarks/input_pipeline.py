r"""Does the Grain input pipeline keep up with the train step? Examples/s of each, from the same run.

  . .venv/bin/activate
  python benchmarks/input_pipeline.py --out=/tmp/lanser_bench                  # ~5 min on 2 shared cores
  python benchmarks/input_pipeline.py --smoke --out=/tmp/lanser_bench_smoke    # seconds: tiny model

Data: a generated feature folder (input_pipeline.synthetic; --records utterances of 1-8 s = 100-800
frames, 64 mel bins, --shards ArrayRecord shards), written once and reused from --data_dir.
Pipeline rows: `input_pipeline.pipeline.train_dataset` exactly as training builds it (shuffle, repeat,
decode, random 300-frame crop, per-bin normalisation, batch of 16), with 0 worker processes (two read
threads in this process) and with each count in --workers, timed after --warmup_batches.
Train-step row: the ResNet-50 step of benchmarks/train_step.py (variant --step_variant, default jax_ynn,
the fastest float32 CPU setting) in its own process. Rounds interleave all rows; medians are reported.
The goal is a pipeline that delivers at least 5x what the step consumes, so that it costs the step little
of the shared CPU. Writes <out>/input_pipeline.json. A measurement, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import importlib.util

HERE = os.path.dirname(os.path.abspath(__file__))
# This file's name would shadow the `input_pipeline` package: take its folder off the path, put the repo on.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.dirname(HERE))

from absl import flags  # noqa: E402

from input_pipeline import pipeline, records, synthetic  # noqa: E402


def _load_train_step_benchmark():
  path = os.path.join(HERE, "train_step.py")
  spec = importlib.util.spec_from_file_location("lanser_bench_train_step", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


step_bench = _load_train_step_benchmark()  # benchmarks/train_step.py: its workers and interleaved rounds

# Grain reads absl flags in its worker processes; this script parses its own arguments with argparse.
flags.FLAGS.mark_as_parsed()
GOAL = 5.0


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="/tmp/lanser_bench", help="folder for input_pipeline.json")
  p.add_argument("--data_dir", default="", help="default: <out>/pipeline_data_<records>")
  p.add_argument("--records", type=int, default=3000)
  p.add_argument("--min_frames", type=int, default=100)
  p.add_argument("--max_frames", type=int, default=800)
  p.add_argument("--shards", type=int, default=8)
  p.add_argument("--mel_bins", type=int, default=64)
  p.add_argument("--num_classes", type=int, default=7)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--frames", type=int, default=300, help="crop length")
  p.add_argument("--workers", default="0,1,2", help="Grain worker-process counts to time")
  p.add_argument("--batches", type=int, default=60, help="timed batches per pipeline row per round")
  p.add_argument("--warmup_batches", type=int, default=4)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--model", default="resnet50")
  p.add_argument("--step_variant", default="jax_ynn", help="a train_step.py JAX variant, or 'none'")
  p.add_argument("--steps", type=int, default=3, help="timed train steps per round")
  p.add_argument("--threads", type=int, default=0, help="train-step worker threads; 0: all CPUs")
  p.add_argument("--smoke", action="store_true", help="tiny data and model, 1 round")
  args = p.parse_args(argv)
  if args.smoke:
    args.records, args.min_frames, args.max_frames, args.shards, args.mel_bins = 64, 40, 200, 2, 32
    args.batch, args.frames, args.workers, args.batches, args.warmup_batches = 4, 64, "0,1", 5, 1
    args.rounds, args.model, args.steps = 1, "tiny", 2
    if args.step_variant == "jax_ynn":
      args.step_variant = "jax_default"  # the variant train_step.py --smoke also compiles (shared cache)
  args.data_dir = args.data_dir or os.path.join(
      args.out, f"pipeline_data_{args.records}x{args.min_frames}-{args.max_frames}x{args.mel_bins}")
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
  info = records.read_dataset_info(args.data_dir)
  shards = records.list_shards(args.data_dir, "train")
  return {"dir": args.data_dir, "records": info["splits"]["train"]["num_examples"], "shards": len(shards),
          "bytes": sum(os.path.getsize(s) for s in shards), "label_names": info["label_names"]}


class PipelineRow:
  """One worker-count setting; each call builds a fresh iterator (new seed), warms it up and times it."""

  def __init__(self, args, num_workers: int, num_classes: int):
    self.args, self.num_workers, self.num_classes = args, num_workers, num_classes
    self.normalizer = pipeline.Normalizer.from_file(os.path.join(args.data_dir, "stats.json"))
    self.calls, self.startup_s, self.cpu_s_per_example = 0, [], []

  def __call__(self) -> float:
    a = self.args
    self.calls += 1
    t0 = time.perf_counter()
    it = iter(pipeline.train_dataset(
        a.data_dir, "train", global_batch_size=a.batch, crop_frames=a.frames, normalizer=self.normalizer,
        num_classes=self.num_classes, seed=self.calls, num_workers=self.num_workers))
    try:
      for _ in range(a.warmup_batches):
        batch = next(it)
      self.startup_s.append(time.perf_counter() - t0)
      t, cpu = time.perf_counter(), time.process_time()
      for _ in range(a.batches):
        batch = next(it)
      seconds = (time.perf_counter() - t) / a.batches
      # This process's CPU only: with workers, their decode/crop work is in other processes.
      self.cpu_s_per_example.append((time.process_time() - cpu) / (a.batches * a.batch))
    finally:
      close = getattr(it, "close", None)
      if close:
        close()
    if batch["log_mel"].shape != (a.batch, a.frames, a.mel_bins):
      raise RuntimeError(f"pipeline batch has shape {batch['log_mel'].shape}")
    return seconds


def main(argv=None) -> dict:
  args = parse_args(argv)
  data = ensure_data(args)
  num_classes = len(data["label_names"])
  worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
  print(f"input pipeline: {data['records']} records in {data['shards']} shards "
        f"({data['bytes'] / 2**20:.0f} MiB), batch {args.batch} x {args.frames} frames x {args.mel_bins} "
        f"bins; worker processes {worker_counts}; load average {os.getloadavg()[0]:.2f}", flush=True)
  rows = {f"pipeline_{w}_workers": PipelineRow(args, w, num_classes) for w in worker_counts}

  workers, info, skipped = {}, {}, {}
  if args.step_variant != "none":
    step_args = step_bench.parse_args([
        f"--model={args.model}", f"--batch={args.batch}", f"--frames={args.frames}",
        f"--mel_bins={args.mel_bins}", f"--num_classes={num_classes}", f"--threads={args.threads}",
        f"--variants={args.step_variant}"])
    workers, info, skipped = step_bench.start_workers([args.step_variant], step_args)
  load_start = os.getloadavg()
  try:
    per_round = step_bench.run_rounds(workers, args.steps, args.rounds, args.batch, skipped, extra=rows)
    memory = {name: w.ask(op="stats") for name, w in workers.items()}
  finally:
    for w in workers.values():
      w.close()

  result_rows = {}
  step_rate = None
  for name, w in workers.items():
    s = statistics.median(per_round[name])
    step_rate = args.batch / s
    result_rows[f"train_step_{name}"] = {
        "kind": "train_step", "variant": name, "seconds_per_batch_rounds": per_round[name],
        "seconds_per_batch": s, "examples_per_s": step_rate, "peak_rss_mib": memory[name]["peak_rss_mib"],
        "xla_flags": info[name]["xla_flags"], "dtype": info[name]["dtype"], "model": args.model}
  for name, row in rows.items():
    s = statistics.median(per_round[name])
    rate = args.batch / s
    result_rows[name] = {
        "kind": "pipeline", "num_workers": row.num_workers, "seconds_per_batch_rounds": per_round[name],
        "seconds_per_batch": s, "examples_per_s": rate, "startup_s": statistics.median(row.startup_s),
        "driver_cpu_ms_per_example": 1e3 * statistics.median(row.cpu_s_per_example),
        "x_train_step": rate / step_rate if step_rate else None,
        "meets_goal": rate >= GOAL * step_rate if step_rate else None}

  print(f"\n{'row':<28}{'s/batch':>9}{'ex/s':>9}{'x step':>8}{'startup s':>11}{'CPU ms/ex':>11}")
  for name, r in result_rows.items():
    x = f"{r['x_train_step']:.1f}" if r.get("x_train_step") else "-"
    startup = f"{r['startup_s']:.1f}" if "startup_s" in r else "-"
    cpu = f"{r['driver_cpu_ms_per_example']:.2f}" if "driver_cpu_ms_per_example" in r else "-"
    print(f"{name:<28}{r['seconds_per_batch']:>9.3f}{r['examples_per_s']:>9.1f}{x:>8}{startup:>11}{cpu:>11}")
  if step_rate:
    best = max((r for r in result_rows.values() if r["kind"] == "pipeline"),
               key=lambda r: r["examples_per_s"])
    print(f"goal: pipeline >= {GOAL:.0f}x the step's {step_rate:.2f} ex/s; best ({best['num_workers']} "
          f"workers) gives {best['x_train_step']:.1f}x: {'met' if best['meets_goal'] else 'NOT met'}")
  result = {"benchmark": "input_pipeline",
            "setup": {"batch": args.batch, "crop_frames": args.frames, "mel_bins": args.mel_bins,
                      "min_frames": args.min_frames, "max_frames": args.max_frames, "rounds": args.rounds,
                      "timed_batches": args.batches, "warmup_batches": args.warmup_batches,
                      "train_steps_per_round": args.steps, "model": args.model, "threads": args.threads,
                      "cpu_count": os.cpu_count(), "load_avg_start": load_start,
                      "load_avg_end": os.getloadavg(), "goal_x": GOAL, "smoke": args.smoke},
            "data": data, "rows": result_rows, "skipped": skipped}
  path = os.path.join(args.out, "input_pipeline.json")
  records.write_json(path, result)
  print(f"\nwrote {path}")
  return result


if __name__ == "__main__":
  main()
