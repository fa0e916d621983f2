r"""The rate of one jitted matrix product per input/output precision on this device (XLA).

  . .venv/bin/activate
  python benchmarks/matmul_dtypes.py --out=/tmp/lanser_bench            # a few seconds
  python benchmarks/matmul_dtypes.py --m=1680 --k=768 --n=3072          # a labeler batch's FFN product

Why it exists: Flax's Dense in bfloat16 asks for bf16 x bf16 -> bf16, and on XLA:CPU that product is a
slow path, while bf16 x bf16 -> f32 (preferred_element_type) runs on the CPU's bf16 dot instructions. The
labelers' bf16 mode relies on the second (labeling/hf.py); this prints both beside float32 and int8.
Prints a table and writes <out>/matmul_dtypes.json; a measurement, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

CASES = {  # name: (input dtype, preferred_element_type)
    "float32": ("float32", None),
    "bf16 x bf16 -> f32": ("bfloat16", "float32"),
    "bf16 x bf16 -> bf16": ("bfloat16", None),
    "int8 x int8 -> int32": ("int8", "int32"),
}


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--m", type=int, default=4096)
  p.add_argument("--k", type=int, default=768)
  p.add_argument("--n", type=int, default=3072)
  p.add_argument("--rounds", type=int, default=7)
  p.add_argument("--out", default="/tmp/lanser_bench")
  p.add_argument("--smoke", action="store_true", help="a 64 x 32 x 16 product, one round")
  args = p.parse_args(argv)
  if args.smoke:
    args.m, args.k, args.n, args.rounds = 64, 32, 16, 1
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import jax
  import jax.numpy as jnp
  import numpy as np

  from lanser_jax.input_pipeline import records

  rng = np.random.default_rng(0)
  a = rng.integers(-4, 4, (args.m, args.k))
  b = rng.integers(-4, 4, (args.k, args.n))
  flops = 2 * args.m * args.k * args.n
  rows = {}
  for name, (dtype, preferred) in CASES.items():
    x, y = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
    f = jax.jit(lambda x, y, preferred=preferred: jax.lax.dot(x, y, preferred_element_type=preferred))
    jax.block_until_ready(f(x, y))  # compile
    seconds = []
    for _ in range(args.rounds):
      t = time.perf_counter()
      jax.block_until_ready(f(x, y))
      seconds.append(time.perf_counter() - t)
    s = statistics.median(seconds)
    rows[name] = {"seconds": s, "gflop_per_s": flops / s / 1e9, "rounds_s": seconds}
  print(f"[{args.m}, {args.k}] x [{args.k}, {args.n}] on {jax.devices()[0].device_kind} "
        f"(XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}); int8 rows count integer operations")
  for name, r in rows.items():
    print(f"  {name:22s} {r['seconds'] * 1e3:8.1f} ms  {r['gflop_per_s']:7.0f} GFLOP/s")
  result = {"benchmark": "matmul_dtypes", "shape": [args.m, args.k, args.n], "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "cpus": len(os.sched_getaffinity(0)), "load_avg": os.getloadavg(), "rows": rows}
  path = os.path.join(args.out, "matmul_dtypes.json")
  records.write_json(path, result)
  print(f"wrote {path}")
  return result


if __name__ == "__main__":
  main()
