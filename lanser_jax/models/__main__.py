"""Prints the parameter counts of the lanser-jax backbones.

  lanser-models [--model=NAME] [--num_classes=7] [--width=1.0] [--mel_bins=64] [--frames=300]
  (or python -m lanser_jax.models ...)
"""

from __future__ import annotations

from typing import Sequence

from absl import app, flags

from lanser_jax import models
from lanser_jax.models import resnet
from lanser_jax.utils import cli

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_MODEL = flags.DEFINE_enum("model", "all", ("all",) + models.ARCHITECTURES, "Backbone to count, or all.",
                           flag_values=FLAGS)
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 7, "Classes of the head.", flag_values=FLAGS)
_WIDTH = flags.DEFINE_float("width", 1.0, "Width multiplier (ResNets only).", flag_values=FLAGS)
_MEL_BINS = flags.DEFINE_integer("mel_bins", 64, "Mel bins per frame of the input.", flag_values=FLAGS)
_FRAMES = flags.DEFINE_integer("frames", 300, "Frames of the input crop.", flag_values=FLAGS)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  names = models.ARCHITECTURES if _MODEL.value == "all" else (_MODEL.value,)
  for name in names:
    width = _WIDTH.value if name in resnet.ARCHS else 1.0
    counts = models.count_params(models.create_model(name, _NUM_CLASSES.value, width), _FRAMES.value,
                                 _MEL_BINS.value)
    ref = f"  [{models.REFERENCES[name]}]" if name in models.REFERENCES else ""
    print(f"{name} (width {width}, {_NUM_CLASSES.value} classes, {_MEL_BINS.value} mel bins): "
          f"{counts['total']:,} parameters = body {counts['body']:,} + head {counts['head']:,}; "
          f"{counts['batch_stats']:,} batch-norm statistics{ref}")
  return 0


def run():
  """The `lanser-models` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
