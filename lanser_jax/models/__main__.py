"""Prints the parameter counts of the lanser-jax backbones: `python -m lanser_jax.models [--model=NAME]`."""

from __future__ import annotations

import argparse
from typing import Sequence

from lanser_jax import models
from lanser_jax.models import resnet


def _main(argv: Sequence[str] | None = None):
  p = argparse.ArgumentParser(description="Print the parameter counts of the lanser-jax backbones.")
  p.add_argument("--model", default="all", choices=("all",) + models.ARCHITECTURES)
  p.add_argument("--num_classes", type=int, default=7)
  p.add_argument("--width", type=float, default=1.0)
  p.add_argument("--mel_bins", type=int, default=64)
  p.add_argument("--frames", type=int, default=300)
  args = p.parse_args(argv)
  names = models.ARCHITECTURES if args.model == "all" else (args.model,)
  for name in names:
    width = args.width if name in resnet.ARCHS else 1.0
    counts = models.count_params(models.create_model(name, args.num_classes, width), args.frames, args.mel_bins)
    ref = f"  [{models.REFERENCES[name]}]" if name in models.REFERENCES else ""
    print(f"{name} (width {width}, {args.num_classes} classes, {args.mel_bins} mel bins): "
          f"{counts['total']:,} parameters = body {counts['body']:,} + head {counts['head']:,}; "
          f"{counts['batch_stats']:,} batch-norm statistics{ref}")


if __name__ == "__main__":
  _main()
