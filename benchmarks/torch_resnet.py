r"""The PyTorch reference for benchmarks/train_step.py: torchvision's ResNet-50 train step on log-mel input.

Runs in a separate interpreter that has torch and torchvision (never the project's venv):
  python3.11 -m venv /work/torchvenv
  /work/torchvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy

train_step.py starts it as a worker; it imports only torch, torchvision and the standard library. The
network is torchvision's ResNet-50 with a one-channel stem conv and a `num_classes` fc, fed
[batch, 1, frames, mel_bins] (time is the first spatial axis, as in lanser_jax.models), trained with SGD
(momentum 0.9, Nesterov, weight decay 1e-4) and cross-entropy, in NCHW or channels_last memory format.

Run alone for a quick look:  /work/torchvenv/bin/python benchmarks/torch_resnet.py --standalone=3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

MARK = "@@bench "  # the answer-line prefix that train_step.Worker reads


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--memory_format", default="channels_last", choices=("nchw", "channels_last"))
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--frames", type=int, default=300)
  p.add_argument("--mel_bins", type=int, default=64)
  p.add_argument("--num_classes", type=int, default=7)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--threads", type=int, default=0, help="0: all CPUs this process may use")
  p.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine (autocast follows it)")
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                 help="bfloat16: the forward under torch.autocast('cpu', bfloat16), float32 parameters "
                 "(the counterpart of the JAX side's config.dtype='bfloat16')")
  p.add_argument("--standalone", type=int, default=0, help="time this many steps and print, no protocol")
  return p.parse_args(argv)


def build(args):
  import torch
  import torchvision

  model = torchvision.models.resnet50(weights=None, num_classes=args.num_classes)
  model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)  # one-channel stem
  fmt = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
  model = model.to(args.device, memory_format=fmt).train()
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
  gen = torch.Generator().manual_seed(0)
  x = torch.randn(args.batch, 1, args.frames, args.mel_bins, generator=gen).to(args.device, memory_format=fmt)
  y = torch.randint(0, args.num_classes, (args.batch,), generator=gen).to(args.device)
  loss_fn = torch.nn.CrossEntropyLoss()

  def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
      loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()

  return model, step


def main(argv=None) -> None:
  args = parse_args(argv)
  cpus = sorted(os.sched_getaffinity(0))
  threads = args.threads or len(cpus)
  if threads < len(cpus):
    os.sched_setaffinity(0, cpus[:threads])
  import torch
  import torchvision

  torch.set_num_threads(threads)
  on_gpu = torch.device(args.device).type == "cuda"
  if on_gpu:
    # Fixed input shapes: let cuDNN pick each convolution's fastest algorithm (as any GPU training script
    # does); float32 convolutions then run in TF32, PyTorch's default (torch.backends.cudnn.allow_tf32).
    torch.backends.cudnn.benchmark = True
  import_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the libraries alone, MiB
  model, step = build(args)

  def run_steps(n: int) -> list[float]:
    """n steps back to back, then the last loss's host copy (it waits for every queued kernel on a GPU): the
    JAX worker's measure; each step's share."""
    t = time.perf_counter()
    for _ in range(n):
      loss = step()
    float(loss)
    return [(time.perf_counter() - t) / n] * n

  run_steps(args.warmup)
  if args.standalone:
    s = sorted(run_steps(args.standalone))[args.standalone // 2]
    print(f"torchvision ResNet-50 ({args.memory_format}, {args.dtype}), batch {args.batch}: {s:.2f} s/step, "
          f"{args.batch / s:.2f} examples/s, {torch.get_num_threads()} threads")
    return

  def reply(obj):
    print(MARK + json.dumps(obj), flush=True)

  reply({"ok": True, "framework": "torch", "version": torch.__version__,
         "torchvision": torchvision.__version__, "threads": torch.get_num_threads(),
         "device_kind": torch.cuda.get_device_name(args.device) if on_gpu else "cpu",
         "backend": "gpu" if on_gpu else "cpu", "tf32_convolutions": bool(on_gpu and torch.backends.cudnn.allow_tf32),
         "memory_format": args.memory_format, "dtype": args.dtype,
         "params": sum(p.numel() for p in model.parameters()), "import_rss_mib": import_rss})
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "run":
      reply({"ok": True, "seconds": run_steps(cmd["steps"])})
    elif cmd["op"] == "stats":
      reply({"ok": True, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
             "device_peak_mib": torch.cuda.max_memory_allocated(args.device) / 2**20 if on_gpu else None})
    else:
      reply({"ok": False, "error": f"unknown op {cmd['op']!r}"})


if __name__ == "__main__":
  main()
