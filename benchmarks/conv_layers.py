r"""ResNet-50's convolutions one at a time: forward + input gradient + weight gradient, JAX beside PyTorch.

  . .venv/bin/activate
  python benchmarks/conv_layers.py --out=/tmp/lanser_bench            # ~1 min; PyTorch column if its venv exists
  python benchmarks/conv_layers.py --smoke --out=/tmp/lanser_bench    # small shapes, no torch

For each layer shape of a ResNet-50 on a 16 x 300 x 64 log-mel batch (the 3x3 convolution of every stage and
the stage-1 1x1 convolutions), times jax.value_and_grad of sum(conv(x, w)^2) with respect to x and w under
jax.jit, with the XLA flag of train_step.py's `jax_ynn` variant, and the same computation in PyTorch
(channels_last, torch.nn.functional.conv2d, backward) in the torch venv. It isolates the convolution
arithmetic from everything XLA does around it in the whole train step (benchmarks/profile_step.py).
Prints a table and writes <out>/conv_layers.json; a measurement, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# (name, batch, height, width, in channels, out channels, kernel): ResNet-50 on [16, 300, 64] inputs.
SHAPES = [
    ("stage1 3x3", 16, 75, 16, 64, 64, 3), ("stage2 3x3", 16, 38, 8, 128, 128, 3),
    ("stage3 3x3", 16, 19, 4, 256, 256, 3), ("stage4 3x3", 16, 10, 2, 512, 512, 3),
    ("stage1 1x1 64->256", 16, 75, 16, 64, 256, 1), ("stage1 1x1 256->64", 16, 75, 16, 256, 64, 1),
]
SMOKE_SHAPES = [("small 3x3", 2, 8, 8, 8, 8, 3), ("small 1x1", 2, 8, 8, 8, 16, 1)]
DEFAULT_TORCH_PYTHON = "/work/torchvenv/bin/python"


def flops(shape) -> float:
  _, n, h, w, ci, co, k = shape
  return 3 * 2 * n * h * w * ci * co * k * k  # forward, input gradient, weight gradient


def time_it(fn, rounds: int) -> list[float]:
  fn()  # compile / warm up
  seconds = []
  for _ in range(rounds):
    t = time.perf_counter()
    fn()
    seconds.append(time.perf_counter() - t)
  return seconds


def jax_rows(shapes, rounds: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  rows = {}
  for shape in shapes:
    name, n, h, w, ci, co, k = shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, h, w, ci)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, ci, co)) * 0.05, jnp.float32)

    def loss(x, kernel):
      y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return jnp.sum(y * y)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    seconds = time_it(lambda: jax.block_until_ready(grad(x, kernel)), rounds)
    rows[name] = {"seconds": statistics.median(seconds), "rounds_s": seconds}
  return rows


def torch_rows(shapes, rounds: int, threads: int) -> dict:
  import torch

  torch.set_num_threads(threads)
  rows = {}
  for shape in shapes:
    name, n, h, w, ci, co, k = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, ci, h, w, generator=gen).to(memory_format=torch.channels_last).requires_grad_()
    weight = (torch.randn(co, ci, k, k, generator=gen) * 0.05).to(memory_format=torch.channels_last)
    weight.requires_grad_()

    def step():
      x.grad = weight.grad = None
      y = torch.nn.functional.conv2d(x, weight, padding=k // 2)
      (y * y).sum().backward()

    seconds = time_it(step, rounds)
    rows[name] = {"seconds": statistics.median(seconds), "rounds_s": seconds}
  return rows


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="/tmp/lanser_bench")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--torch_python", default=DEFAULT_TORCH_PYTHON if os.path.exists(DEFAULT_TORCH_PYTHON) else "")
  p.add_argument("--smoke", action="store_true", help="two small shapes, one round, no torch")
  p.add_argument("--torch_worker", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  shapes = SMOKE_SHAPES if args.smoke else SHAPES
  threads = len(os.sched_getaffinity(0))
  if args.torch_worker:  # in the torch venv: print the rows as JSON and stop
    print(json.dumps(torch_rows(shapes, args.rounds, threads)))
    return {}
  if args.smoke:
    args.rounds, args.torch_python = 1, ""

  sys.path.insert(0, HERE)
  import train_step  # noqa: E402 -- for its XLA flag, so the layers run as in the jax_ynn step

  os.environ["XLA_FLAGS"] = train_step.YNN_FLAG  # before jax is imported
  sys.path.insert(0, os.path.dirname(HERE))
  from lanser_jax.input_pipeline import records

  result = {"benchmark": "conv_layers", "threads": threads, "xla_flags": os.environ["XLA_FLAGS"],
            "load_avg": os.getloadavg(), "jax": jax_rows(shapes, args.rounds), "torch": None}
  if args.torch_python:
    argv = [args.torch_python, os.path.abspath(__file__), "--torch_worker", f"--rounds={args.rounds}"]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if proc.returncode == 0:
      result["torch"] = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
      result["torch_skipped"] = proc.stderr.strip()[-300:]
  else:
    result["torch_skipped"] = "no --torch_python"

  print(f"convolution forward + both gradients, float32, {threads} threads "
        f"(XLA_FLAGS={result['xla_flags']!r})")
  print(f"{'layer':22s}{'GFLOP':>7s}{'JAX ms':>9s}{'GFLOP/s':>9s}{'torch ms':>10s}{'GFLOP/s':>9s}{'JAX/torch':>11s}")
  for shape in shapes:
    name, f = shape[0], flops(shape)
    j = result["jax"][name]
    j["gflop_per_s"] = f / j["seconds"] / 1e9
    line = f"{name:22s}{f / 1e9:7.2f}{j['seconds'] * 1e3:9.1f}{j['gflop_per_s']:9.0f}"
    if result["torch"]:
      t = result["torch"][name]
      t["gflop_per_s"] = f / t["seconds"] / 1e9
      j["speed_vs_torch"] = t["seconds"] / j["seconds"]
      line += f"{t['seconds'] * 1e3:10.1f}{t['gflop_per_s']:9.0f}{j['speed_vs_torch']:10.2f}x"
    print(line)
  if not result["torch"]:
    print(f"PyTorch column skipped: {result['torch_skipped']}")
  path = os.path.join(args.out, "conv_layers.json")
  records.write_json(path, result)
  print(f"wrote {path}")
  return result


if __name__ == "__main__":
  main()
