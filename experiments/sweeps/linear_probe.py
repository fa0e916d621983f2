"""Linear probe of the frozen pre-trained backbones: fraction x source x seed x dataset/fold (180 cells).

  python -m lanser_jax.sweep --sweep=experiments/sweeps/linear_probe.py:platform=gpu \
      --root=/data/lanser/runs (--print | --run | --aggregate)

Same cells as label_efficiency.py for the two pre-trained sources, with probe=True (only the head
trains: config.freeze_backbone + init_from). Names end up under <root>/<dataset>/fold<K>/probe/...
Arguments: platform, runlocal, data_root, runs_root. Expected cost: well under the fine-tuning
sweep (no backbone gradients); not measured.
"""

import importlib.util
import os

FRACTIONS = (0.1, 0.2, 0.3, 0.5, 1.0)
SEEDS = (0, 1, 2)
SOURCES = ("peoples_speech", "condensed_movies")


def load_common():
  """experiments/lanser_common.py, loaded by path (experiments/ is not a package)."""
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lanser_common.py")
  spec = importlib.util.spec_from_file_location("lanser_common", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_sweep(arg=None):
  common = load_common()
  arg = common.sweep_args(arg)
  cells = []
  for dataset, fold, exp_file in common.dataset_folds():
    for source in SOURCES:
      for fraction in FRACTIONS:
        for seed in SEEDS:
          cell = common.finetune_cell(dataset, fold, exp_file, source, fraction, seed, arg,
                                      extra="probe=True", tag="probe")
          cell["axes"]["method"] = "linear_probe"
          cells.append(cell)
  return cells
