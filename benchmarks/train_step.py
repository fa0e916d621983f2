r"""Training-step speed and memory: the project's train step (ResNet-50, and with --model= the Conformer or
the spectrogram transformer beside it) against torchvision's ResNet-50.

  . .venv/bin/activate
  python benchmarks/train_step.py --out=/tmp/lanser_bench                  # ~10 min on 2 shared cores
  python benchmarks/train_step.py --smoke --out=/tmp/lanser_bench_smoke    # seconds: tiny model, no torch
  python benchmarks/train_step.py --model=conformer_s,spectrogram_transformer_b16 \
      --variants=jax_default,jax_ynn_bf16 --out=/tmp/lanser_bench_backbones   # beside ResNet-50 (always first)

Each variant runs in its own worker process, started once and kept alive, so XLA flags are set before jax
is imported and every worker's RSS high-water mark is its own. Rounds are interleaved (each round runs every
variant, in a rotated order) and the median over rounds is reported, because the machine may be shared.
  jax_default     create_model + make_optimizer + make_train_step (config_lib.base_config), default XLA flags
  jax_ynn         same, XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution
  jax_ynn_bf16    same flag, config.dtype=bfloat16 (float32 parameters)
  jax_bf16        config.dtype=bfloat16, default XLA flags: the bf16 row on a GPU or TPU
  torch_nchw / torch_channels_last   torchvision ResNet-50, one-channel stem, 7-class fc (torch_resnet.py)
  torch_channels_last_bf16           same, forward under torch.autocast(bfloat16): jax_ynn_bf16's counterpart
The PyTorch workers run in another interpreter (--torch_python, default /work/torchvenv/bin/python; see
benchmarks/README.md) and are skipped, with a message, when it cannot import torch and torchvision. Both
sides use the same number of threads (--threads, default: all CPUs this process may use).

Figures: seconds/step and examples/s (median of rounds), peak RSS (ru_maxrss) and device peak memory where
jax reports it, XLA's FLOP count of one compiled step, achieved FLOP/s, and MFU on devices with a known peak.
Writes <out>/train_step.json. A measurement, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "@@bench "  # answer lines from workers start with this; anything else they print is passed through
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
JAX_VARIANTS = {
    "jax_default": {"xla_flags": "", "dtype": "float32"},
    "jax_ynn": {"xla_flags": YNN_FLAG, "dtype": "float32"},
    "jax_ynn_bf16": {"xla_flags": YNN_FLAG, "dtype": "bfloat16"},
    "jax_bf16": {"xla_flags": "", "dtype": "bfloat16"},  # on an accelerator (the ynn flag is XLA:CPU's)
}
TORCH_VARIANTS = {"torch_nchw": ("nchw", "float32"), "torch_channels_last": ("channels_last", "float32"),
                  # the bfloat16 counterpart of jax_ynn_bf16: compare like precision with like
                  "torch_channels_last_bf16": ("channels_last", "bfloat16")}
# Dense bf16 peak FLOP/s per chip, matched against jax's device_kind; no entry, no MFU (CPUs included).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "TPU v4": 275e12, "TPU v5 lite": 197e12,
              "TPU v5e": 197e12}
DEFAULT_TORCH_PYTHON = "/work/torchvenv/bin/python"


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="/tmp/lanser_bench", help="folder for train_step.json")
  p.add_argument("--model", default="resnet50", help="comma-separated lanser_jax.models names, e.g. "
                 "conformer_s,spectrogram_transformer_b16; ResNet-50 is always run beside them (the first model is the reference)")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--frames", type=int, default=300)
  p.add_argument("--mel_bins", type=int, default=64)
  p.add_argument("--num_classes", type=int, default=7)
  p.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--warmup", type=int, default=1, help="untimed steps after compiling")
  p.add_argument("--threads", type=int, default=0, help="0: all CPUs this process may use")
  p.add_argument("--variants", default="", help="comma-separated; default: all (smoke: jax_default, "
                 "jax_ynn_bf16)")
  p.add_argument("--specaugment", action="store_true", help="keep SpecAugment in the JAX step (off: "
                 "the torch step has none)")
  p.add_argument("--torch_python", default=DEFAULT_TORCH_PYTHON if os.path.exists(DEFAULT_TORCH_PYTHON)
                 else "", help="interpreter with torch + torchvision; '' skips the PyTorch column")
  p.add_argument("--torch_device", default="cpu", help="where the PyTorch reference runs: cpu, or cuda on a "
                 "GPU machine (then also pass --threads for its CPU side)")
  p.add_argument("--smoke", action="store_true", help="tiny model, 2 steps, 1 round, no torch")
  p.add_argument("--worker", default="", help=argparse.SUPPRESS)  # internal: run one JAX variant
  p.add_argument("--count_flops", action="store_true", help=argparse.SUPPRESS)  # internal: with --worker
  args = p.parse_args(argv)
  args.models = [m.strip() for m in args.model.split(",") if m.strip()] or ["resnet50"]
  if args.worker:
    args.models = args.models[:1]
  elif "resnet50" not in args.models and "tiny" not in args.models:
    args.models.insert(0, "resnet50")
  if args.smoke:  # each family at its tiny size
    tiny = lambda m: ("conformer_tiny" if m.startswith("conformer") else "spectrogram_transformer_tiny"
                      if m.startswith("spectrogram_transformer") else "tiny")
    args.models = list(dict.fromkeys(tiny(m) for m in args.models))
    args.batch, args.frames, args.mel_bins = 4, 64, 32
    args.steps, args.rounds, args.warmup = 2, 1, 1
    args.variants = args.variants or "jax_default,jax_ynn_bf16"  # flag plumbing and bf16; no torch
  args.variants = args.variants or ",".join([*JAX_VARIANTS, *TORCH_VARIANTS])
  args.threads = args.threads or len(os.sched_getaffinity(0))
  args.model = args.models[0]
  return args


def variant_of(name: str) -> tuple[str, str | None]:
  """'jax_default@conformer_s' -> ('jax_default', 'conformer_s'); a name without '@' runs the first model."""
  variant, _, model = name.partition("@")
  return variant, model or None


def pin_threads(threads: int) -> int:
  """Restricts this process to `threads` CPUs (before jax/torch size their thread pools)."""
  cpus = sorted(os.sched_getaffinity(0))
  if threads < len(cpus):
    os.sched_setaffinity(0, cpus[:threads])
  return len(os.sched_getaffinity(0))


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def answer(obj: dict) -> None:
  print(MARK + json.dumps(obj), flush=True)


def serve(run_steps, stats, ops=None) -> None:
  """The worker side of the protocol: one JSON command per stdin line, one MARK-prefixed answer each.
  `ops` maps further op names to functions of the command returning the answer's fields."""
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "run":
      answer({"ok": True, "seconds": run_steps(cmd["steps"])})
    elif cmd["op"] == "stats":
      answer({"ok": True, **stats()})
    elif cmd["op"] in (ops or {}):
      try:
        answer({"ok": True, **ops[cmd["op"]](cmd)})
      except Exception as e:  # reported to the driver, which records it; the worker stays usable
        answer({"ok": False, "error": f"{cmd['op']}: {type(e).__name__}: {e}"})
    else:
      answer({"ok": False, "error": f"unknown op {cmd['op']!r}"})


# ---------------------------------------------------------------------------------------------------
# JAX worker: the project's own model, optimiser and train step.


def build_jax_step(model_name: str, dtype: str, batch_size: int, frames: int, mel_bins: int, num_classes: int,
                   specaugment: bool = False, flops_only: bool = False):
  """The project's train step as train_and_evaluate builds it, compiled for one input shape.

  Returns (step, state, batch, info): `step(state, batch)` runs one step and waits for it (the state is
  donated); info has params, compile_s and XLA's flops_per_step. Also used by profile_step.py.
  """
  sys.path.insert(0, REPO)
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  from lanser_jax.input_pipeline import pipeline
  from lanser_jax import config_lib, models, train

  c = config_lib.base_config()
  c.model.name, c.dtype, c.batch_size = model_name, dtype, batch_size
  c.data.crop_frames = frames
  c.optimizer.name = "sgd"  # momentum 0.9, Nesterov, weight decay on kernels (base_config)
  c.optimizer.schedule, c.optimizer.warmup_steps = "constant", 1
  c.specaugment.enabled = specaugment
  model = models.create_model(c.model.name, num_classes, c.model.width, c.model.dropout_rate, c.dtype)
  schedule = train.make_schedule(c)
  tx = train.make_optimizer(c, schedule)

  mesh = Mesh(np.asarray(jax.devices()), ("data",))  # as train_and_evaluate lays out a host
  replicated, data_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

  def init(key):
    variables = model.init(key, jnp.zeros((1, frames, mel_bins)), train=False)
    return train.TrainState.create(apply_fn=model.apply, params=variables["params"],
                                   batch_stats=variables.get("batch_stats", {}), tx=tx)

  abstract_state = jax.eval_shape(init, jax.random.key(0))
  state_sharding = jax.tree.map(lambda _: replicated, abstract_state)
  normalizer = pipeline.Normalizer(np.zeros(mel_bins, np.float32), np.ones(mel_bins, np.float32))
  step_fn = jax.jit(train.make_train_step(model, c, num_classes, normalizer, schedule), donate_argnums=(0,),
                    in_shardings=(state_sharding, data_sharding), out_shardings=(state_sharding, replicated))
  flops_of = lambda cost: float((cost[0] if isinstance(cost, (list, tuple)) else cost or {}).get("flops", 0.0))
  if flops_only:  # XLA's count of the program as written, from shapes alone: nothing is run or compiled
    abstract_batch = {"log_mel": jax.ShapeDtypeStruct((batch_size, frames, mel_bins), jnp.float16),
                      "length": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
                      "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
    return flops_of(step_fn.lower(abstract_state, abstract_batch).cost_analysis())
  state = jax.jit(init, out_shardings=state_sharding)(jax.random.key(c.seed))
  rng = np.random.default_rng(0)
  # The input pipeline's batch: float16 crops + lengths, normalised and masked inside the step.
  batch = jax.device_put({
      "log_mel": rng.standard_normal((batch_size, frames, mel_bins)).astype(np.float16),
      "length": np.full((batch_size,), frames, np.int32),
      "label": rng.integers(0, num_classes, batch_size).astype(np.int32)}, data_sharding)
  start = time.perf_counter()
  lowered = step_fn.lower(state, batch)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  # XLA's count of the program as written (the lowered one) and of the compiled one. On a GPU neither counts
  # the convolutions (cuDNN calls; an H200 gave 0 and 0.10 of 8.75 GFLOP per example): the driver then
  # counts the same program lowered for the CPU (count_flops_on_cpu), the same on every backend.
  flops, compiled_flops = flops_of(lowered.cost_analysis()), flops_of(compiled.cost_analysis())

  def step(state, batch):
    state, stats = compiled(state, batch)
    jax.block_until_ready((state, stats))
    return state

  step.compiled, step.data_sharding = compiled, data_sharding  # for feed_steps: the same executable
  info = {"params": int(models.param_count(state.params)), "compile_s": compile_s, "flops_per_step": flops,
          "compiled_flops_per_step": compiled_flops}
  return step, state, batch, info


def feed_steps(step, state, args, data_dir: str, num_workers: int, steps: int, warmup: int, seed: int = 0):
  """The same compiled step fed by the input pipeline as train_and_evaluate feeds it: Grain batches of
  float16 crops (`pipeline.train_dataset(on_device=True)`, `num_workers` worker processes) through
  `train.DevicePrefetch` (the next two batches on the device while a step runs), steps dispatched without
  waiting, one wait at the end. Returns (state, figures): wall seconds per step and this process's and the
  Grain workers' CPU seconds per step. The batch must be the step's (--batch, --frames, --mel_bins and the
  data's classes)."""
  import importlib.util

  import jax
  from absl import flags

  from lanser_jax.input_pipeline import pipeline
  from lanser_jax import train

  if not flags.FLAGS.is_parsed():  # Grain's worker processes read absl flags (as main.py's app.run parses them)
    flags.FLAGS.mark_as_parsed()
  # The input-pipeline benchmark's clock (this process + the Grain workers started after it), by file path as
  # input_throughput.py loads it.
  spec = importlib.util.spec_from_file_location(
      "lanser_bench_pipeline_stages", os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipeline_stages.py"))
  stages_lib = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(stages_lib)
  clock = stages_lib.CpuClock()

  normalizer = pipeline.Normalizer.from_file(os.path.join(data_dir, "stats.json"))
  if normalizer.mel_bins != args.mel_bins:
    raise ValueError(f"{data_dir}: {normalizer.mel_bins} mel bins, the step was built for {args.mel_bins}")
  t0 = time.perf_counter()
  it = train.DevicePrefetch(iter(pipeline.train_dataset(
      data_dir, "train", global_batch_size=args.batch, crop_frames=args.frames, normalizer=normalizer,
      num_classes=args.num_classes, seed=seed, num_workers=num_workers, on_device=True)), step.data_sharding)
  try:
    for _ in range(warmup * max(1, num_workers)):  # every worker started and in its steady state
      state, stats = step.compiled(state, next(it))
    jax.block_until_ready((state, stats))
    startup = time.perf_counter() - t0
    c0, t = clock.split(), time.perf_counter()
    for _ in range(steps):
      state, stats = step.compiled(state, next(it))
    jax.block_until_ready((state, stats))
    seconds, c1 = time.perf_counter() - t, clock.split()
  finally:
    it.close()
  return state, {"seconds_per_step": seconds / steps, "startup_s": startup, "steps": steps,
                 "cpu_s_per_step_main": (c1[0] - c0[0]) / steps,
                 "cpu_s_per_step_workers": (c1[1] - c0[1]) / steps}


def count_flops_on_cpu(args, model: str, dtype: str) -> float:
  """XLA:CPU's FLOP count of the project's step for `model` and `dtype` at the benchmark's shapes, lowered
  (not compiled, not run) in a CPU-only process: what MFU divides by where the device's own cost analysis
  misses the convolutions."""
  argv = [sys.executable, os.path.abspath(__file__), f"--worker={'jax_bf16' if dtype == 'bfloat16' else 'jax_default'}",
          "--count_flops", *shape_args(args, model)]
  r = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=600,
                     env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "CUDA_VISIBLE_DEVICES": ""})
  lines = [l for l in r.stdout.splitlines() if l.startswith(MARK)]
  if r.returncode or not lines:
    raise RuntimeError(f"counting FLOPs on the CPU failed: {r.stderr[-1000:]}")
  return float(json.loads(lines[-1][len(MARK):])["flops_per_step"])


def jax_worker(args) -> None:
  threads = pin_threads(args.threads)
  import jax  # after pinning: XLA sizes its thread pool from the CPUs this process may use

  variant = JAX_VARIANTS[args.worker]
  sys.path.insert(0, REPO)
  if args.count_flops:
    answer({"ok": True, "flops_per_step": build_jax_step(args.model, variant["dtype"], args.batch, args.frames,
                                                          args.mel_bins, args.num_classes, args.specaugment,
                                                          flops_only=True), "backend": jax.default_backend()})
    return
  importlib.import_module("lanser_jax.train")  # first, so that import_rss counts the libraries alone
  import_rss = peak_rss_mib()  # (lanser_jax.train pulls in TensorFlow through clu)
  step, state, batch, info = build_jax_step(args.model, variant["dtype"], args.batch, args.frames,
                                            args.mel_bins, args.num_classes, args.specaugment)

  def run_steps(n: int) -> list[float]:
    """n steps dispatched back to back and one wait at the end, as the training loop runs them (a wait after
    each step would add the host's dispatch gap to every step on an accelerator); each step's share."""
    nonlocal state
    t = time.perf_counter()
    for _ in range(n):
      state, stats = step.compiled(state, batch)
    jax.block_until_ready((state, stats))
    return [(time.perf_counter() - t) / n] * n

  run_steps(args.warmup)
  device = jax.devices()[0]

  def stats() -> dict:
    mem = device.memory_stats() or {}  # None on CPU
    peak = mem.get("peak_bytes_in_use")
    return {"peak_rss_mib": peak_rss_mib(),
            "device_peak_mib": None if peak is None else peak / 2**20}

  def feed(cmd: dict) -> dict:
    nonlocal state
    state, figures = feed_steps(step, state, args, cmd["data_dir"], cmd["workers"], cmd["steps"],
                                cmd.get("warmup", 2), cmd.get("seed", 0))
    return figures

  answer({"ok": True, "framework": "jax", "version": jax.__version__, "backend": jax.default_backend(),
          "device_kind": device.device_kind, "device_count": jax.device_count(), "threads": threads,
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "dtype": variant["dtype"], **info,
          "default_matmul_precision": jax.config.jax_default_matmul_precision,  # None: XLA's (TF32 on GPUs)
          "import_rss_mib": import_rss})
  serve(run_steps, stats, {"feed": feed})


# ---------------------------------------------------------------------------------------------------
# The driver: workers, interleaved rounds, figures.


class Worker:
  """One benchmark variant in its own process, driven over stdin/stdout."""

  def __init__(self, name: str, argv: list[str], env: dict[str, str]):
    self.name = name
    self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                 cwd=REPO)

  def read(self) -> dict:
    while True:
      line = self.proc.stdout.readline()
      if not line:
        raise RuntimeError(f"{self.name}: worker exited with code {self.proc.wait()} (see its stderr above)")
      if line.startswith(MARK):
        reply = json.loads(line[len(MARK):])
        if not reply.get("ok"):
          raise RuntimeError(f"{self.name}: {reply.get('error')}")
        return reply
      sys.stderr.write(line)

  def ask(self, **cmd) -> dict:
    self.proc.stdin.write(json.dumps(cmd) + "\n")
    self.proc.stdin.flush()
    return self.read()

  def close(self) -> None:
    if self.proc.poll() is None:
      self.proc.stdin.close()
      try:
        self.proc.wait(timeout=60)
      except subprocess.TimeoutExpired:
        self.proc.kill()


def shape_args(args, model: str | None = None) -> list[str]:
  return [f"--model={model or args.model}", f"--batch={args.batch}", f"--frames={args.frames}",
          f"--mel_bins={args.mel_bins}", f"--num_classes={args.num_classes}", f"--warmup={args.warmup}",
          f"--threads={args.threads}"] + (["--specaugment"] if args.specaugment else [])


def start_jax_worker(name: str, args) -> Worker:
  # XLA_FLAGS replaces the caller's (e.g. the tests' 8 fake devices). TensorFlow is imported (through clu)
  # but never computes: quiet its start-up log.
  variant, model = variant_of(name)
  # On a GPU several workers (and the PyTorch ones) share the device: JAX must not take 75% of its memory
  # up front in each (XLA_PYTHON_CLIENT_PREALLOCATE); device_peak_mib still reads the allocator's peak.
  env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", **os.environ, "XLA_FLAGS": JAX_VARIANTS[variant]["xla_flags"],
         "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
  return Worker(name, [sys.executable, os.path.abspath(__file__), f"--worker={variant}",
                       *shape_args(args, model)], env)


def torch_check(python: str) -> str:
  """'' when `python` imports torch and torchvision, else why the PyTorch column is skipped."""
  if not python:
    return "no --torch_python given (and /work/torchvenv/bin/python does not exist)"
  try:
    r = subprocess.run([python, "-c", "import torch, torchvision"], capture_output=True, text=True,
                       timeout=300)
  except (OSError, subprocess.TimeoutExpired) as e:
    return f"{python}: {e}"
  return "" if r.returncode == 0 else f"{python} cannot import torch/torchvision: {r.stderr.strip()[-300:]}"


def start_torch_worker(name: str, args) -> Worker:
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_resnet.py")
  memory_format, dtype = TORCH_VARIANTS[name]
  argv = [args.torch_python, script, f"--memory_format={memory_format}", f"--dtype={dtype}",
          f"--device={args.torch_device}", "--batch", str(args.batch),
          "--frames", str(args.frames), "--mel_bins", str(args.mel_bins), "--num_classes",
          str(args.num_classes), "--warmup", str(args.warmup), "--threads", str(args.threads)]
  return Worker(name, argv, {**os.environ, "OMP_NUM_THREADS": str(args.threads)})


def start_workers(names: list[str], args) -> tuple[dict[str, Worker], dict[str, dict], dict[str, str]]:
  """Starts each variant in turn, so that compile times are not inflated by each other (in --smoke mode all
  at once: there only the wall time matters); returns workers, their setup info, skips."""
  workers, info, skipped = {}, {}, {}
  torch_names = [n for n in names if n in TORCH_VARIANTS]
  why_not_torch = torch_check(args.torch_python) if torch_names else ""
  start = lambda name: (start_jax_worker if variant_of(name)[0] in JAX_VARIANTS else start_torch_worker)(name, args)
  started = {}
  for name in names:
    if name in TORCH_VARIANTS and why_not_torch:
      skipped[name] = why_not_torch
    elif name in TORCH_VARIANTS and args.model != "resnet50":
      skipped[name] = f"the PyTorch reference is torchvision's ResNet-50, not {args.model!r}"
    elif args.smoke:
      started[name] = start(name)
    else:
      started[name] = None
  for name, worker in started.items():
    t = time.perf_counter()
    worker = worker or start(name)
    try:
      info[name] = worker.read()
    except RuntimeError as e:
      worker.close()
      skipped[name] = f"failed to start: {e}"
      continue
    workers[name] = worker
    print(f"  {name}: ready in {time.perf_counter() - t:.1f} s ({info[name]['params']:,} parameters, "
          f"{info[name]['threads']} threads)", flush=True)
  for name, why in skipped.items():
    if name not in info:
      print(f"  {name}: SKIPPED: {why}", flush=True)
  return workers, info, skipped


def run_rounds(workers: dict[str, Worker], steps: int, rounds: int, batch: int, skipped: dict[str, str],
               extra=None) -> dict[str, list[float]]:
  """Mean seconds/step per round for each worker; each round rotates the order so none always goes first.
  `extra` maps a name to a callable returning one round's seconds/step (the input-pipeline benchmark).
  A worker that dies (e.g. out of memory) is closed, dropped from the results and its error put in
  `skipped`; the others go on."""
  jobs = {name: (lambda w=w: statistics.mean(w.ask(op="run", steps=steps)["seconds"]))
          for name, w in workers.items()}
  jobs.update(extra or {})
  names = list(jobs)
  per_round: dict[str, list[float]] = {name: [] for name in names}
  for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)] if names else []
    for name in order:
      try:
        per_round[name].append(jobs[name]())
      except RuntimeError as e:
        print(f"  {name}: FAILED in round {r + 1}: {e}", flush=True)
        skipped[name] = f"failed in round {r + 1}: {e}"
        names.remove(name)
        del per_round[name]
        if name in workers:
          workers.pop(name).close()
    print(f"  round {r + 1}/{rounds}: " + ", ".join(
        f"{n} {batch / per_round[n][-1]:.2f} ex/s" for n in names), flush=True)
  return per_round


def peak_flops(device_kind: str) -> float | None:
  for key, value in PEAK_FLOPS.items():
    if key.lower() in device_kind.lower():
      return value
  return None


def summarise(args, per_round, info, memory) -> dict[str, dict]:
  model_flops = next((info[n]["flops_per_step"] for n in ("jax_ynn", "jax_default", "jax_ynn_bf16", "jax_bf16")
                      if n in info and info[n]["flops_per_step"] > 0), 0.0)
  rows = {}
  for name, seconds in per_round.items():
    s = statistics.median(seconds)
    row = {**info[name], **memory[name], "seconds_per_step_rounds": seconds, "seconds_per_step": s,
           "examples_per_s": args.batch / s}
    flops = row.get("flops_per_step") or model_flops  # torch: XLA's count of the same network
    row["flops_source"] = (("XLA:CPU's count of the same step, lowered (this device's misses convolutions)"
                            if row.get("flops_counted_on") else "own XLA cost analysis")
                           if row.get("flops_per_step") else "jax variant's count")
    row["achieved_flops_per_s"] = flops / s if flops else None
    peak = peak_flops(row.get("device_kind", ""))  # torch on a GPU reports the device's name too
    row["mfu"] = row["achieved_flops_per_s"] / peak if peak and row["achieved_flops_per_s"] else None
    row["model"] = variant_of(name)[1] or args.model
    row["gflop_per_example"] = flops / args.batch / 1e9 if flops else None
    rows[name] = row
  for ref in TORCH_VARIANTS:
    if ref in rows:
      for row in rows.values():
        row[f"vs_{ref}"] = row["examples_per_s"] / rows[ref]["examples_per_s"]
  return rows


def print_table(rows: dict[str, dict]) -> None:
  print(f"\n{'variant':<26}{'s/step':>8}{'ex/s':>8}{'vs NCHW':>9}{'vs CL':>7}{'vs CL bf16':>11}{'RSS MiB':>9}"
        f"{'dev MiB':>9}{'GFLOP/ex':>9}{'GFLOP/s':>9}{'MFU':>7}  compile s")
  for name, r in rows.items():
    vs = lambda k: f"{r[k]:.2f}" if k in r else "-"
    gf = f"{r['achieved_flops_per_s'] / 1e9:.1f}" if r["achieved_flops_per_s"] else "-"
    mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
    compile_s = f"{r['compile_s']:.1f}" if "compile_s" in r else "-"
    gfe = f"{r['gflop_per_example']:.2f}" if r.get("gflop_per_example") else "-"
    dev = f"{r['device_peak_mib']:.0f}" if r.get("device_peak_mib") is not None else "-"
    s_step = f"{r['seconds_per_step']:.4f}" if r["seconds_per_step"] < 0.1 else f"{r['seconds_per_step']:.2f}"
    print(f"{name:<26}{s_step:>8}{r['examples_per_s']:>8.1f}{vs('vs_torch_nchw'):>9}"
          f"{vs('vs_torch_channels_last'):>7}{vs('vs_torch_channels_last_bf16'):>11}{r['peak_rss_mib']:>9.0f}{dev:>9}"
          f"{gfe:>9}{gf:>9}{mfu:>7}  {compile_s}")


def setup_record(args) -> dict:
  return {"model": args.model, "models": args.models, "batch": args.batch, "frames": args.frames, "mel_bins": args.mel_bins,
          "num_classes": args.num_classes, "optimizer": "sgd momentum 0.9 nesterov, wd 1e-4",
          "specaugment": args.specaugment, "steps_per_round": args.steps, "rounds": args.rounds,
          "warmup_steps": args.warmup, "threads": args.threads, "cpu_count": os.cpu_count(),
          "load_avg_start": os.getloadavg(), "smoke": args.smoke, "python": sys.version.split()[0],
          "jax_compilation_cache": os.environ.get("JAX_COMPILATION_CACHE_DIR", "")}


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.worker:
    jax_worker(args)
    return {}
  names = [n.strip() for n in args.variants.split(",") if n.strip()]
  unknown = [n for n in names if n not in JAX_VARIANTS and n not in TORCH_VARIANTS]
  if unknown:
    raise SystemExit(f"--variants: unknown {unknown}; choose from {[*JAX_VARIANTS, *TORCH_VARIANTS]}")
  # Every JAX variant once more for each further model, as '<variant>@<model>' (the PyTorch reference is
  # ResNet-50's alone).
  names += [f"{n}@{m}" for m in args.models[1:] for n in names if n in JAX_VARIANTS]
  setup = setup_record(args)
  print(f"train step: {', '.join(args.models)}, batch {args.batch}, {args.frames} frames x {args.mel_bins} mel bins, "
        f"{args.num_classes} classes, SGD momentum; {args.threads} threads on each side "
        f"(load average {setup['load_avg_start'][0]:.2f})", flush=True)
  workers, info, skipped = start_workers(names, args)
  counted = {}
  for name, i in info.items():
    if i.get("framework") == "jax" and not i.get("flops_per_step"):  # e.g. on a GPU (build_jax_step says why)
      key = (variant_of(name)[1] or args.model, i["dtype"])
      try:
        counted[key] = counted.get(key) or count_flops_on_cpu(args, *key)
        i["flops_per_step"], i["flops_counted_on"] = counted[key], "cpu (lowered step, same shapes)"
        print(f"  {name}: {i['backend']} counts no convolution FLOPs; counted on the CPU: "
              f"{counted[key] / args.batch / 1e9:.2f} GFLOP per example", flush=True)
      except RuntimeError as e:
        print(f"  {name}: no FLOP count ({e}); no MFU", flush=True)
  try:
    per_round = run_rounds(workers, args.steps, args.rounds, args.batch, skipped)
    memory = {name: w.ask(op="stats") for name, w in workers.items()}
  finally:
    for w in workers.values():
      w.close()
  for m in memory.values():
    m.pop("ok", None)
  setup["load_avg_end"] = os.getloadavg()
  rows = summarise(args, per_round, {n: {k: v for k, v in i.items() if k != "ok"} for n, i in info.items()},
                   memory)
  print_table(rows)
  result = {"benchmark": "train_step", "setup": setup, "variants": rows, "skipped": skipped}
  sys.path.insert(0, REPO)
  from lanser_jax.input_pipeline import records  # the project's JSON writer (temp name, then rename)
  path = os.path.join(args.out, "train_step.json")
  records.write_json(path, result)
  print(f"\nwrote {path}")
  return result


if __name__ == "__main__":
  main()
