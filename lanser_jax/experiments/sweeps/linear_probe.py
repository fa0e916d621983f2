"""Linear probe of the frozen pre-trained backbones: fraction x source x seed x dataset/fold (180 cells).

  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/linear_probe.py:platform=gpu \
      --root=/data/lanser/runs (--print | --run | --aggregate)

Same cells as label_efficiency.py for the two pre-trained sources, with probe=True (only the head
trains: config.freeze_backbone + init_from). Names end up under <root>/<dataset>/fold<K>/probe/...
Arguments: platform, runlocal, data_root, runs_root,
iemocap_protocol, crema_d_split (as label_efficiency.py). Expected cost: 180 runs, 11.6M examples in
all; a probe's step computes no backbone gradients, so under the ~13 H200-minutes those examples take in
full fine-tuning steps at the measured 14,620 examples/s (ResNet-50, bfloat16, batch 256, one H200;
benchmarks/README.md), plus each run's start-up, compilation and evaluation (not measured).
"""

from lanser_jax.experiments import common

FRACTIONS = (0.1, 0.2, 0.3, 0.5, 1.0)
SEEDS = (0, 1, 2)
SOURCES = ("peoples_speech", "condensed_movies")


def get_sweep(arg=None):
  arg = common.sweep_args(arg)
  cells = []
  folds = common.dataset_folds(arg.iemocap_protocol, arg.crema_d_split)
  for dataset, fold, exp_file, protocol in folds:
    for source in SOURCES:
      for fraction in FRACTIONS:
        for seed in SEEDS:
          cell = common.finetune_cell(dataset, fold, exp_file, source, fraction, seed, arg,
                                      extra={"probe": True}, tag="probe", protocol=protocol)
          cell["axes"]["method"] = "linear_probe"
          cells.append(cell)
  return cells
