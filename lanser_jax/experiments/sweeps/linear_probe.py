"""Linear probe of the frozen pre-trained backbones: fraction x source x seed x dataset/fold (180 cells).

  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/linear_probe.py:platform=gpu \
      --root=/data/lanser/runs (--print | --run | --aggregate)

Same cells as label_efficiency.py for the two pre-trained sources, with probe=True (only the head
trains: config.freeze_backbone + init_from). Names end up under <root>/<dataset>/fold<K>/probe/...
Arguments: platform, runlocal, data_root, runs_root,
iemocap_protocol, crema_d_split (as label_efficiency.py). Expected cost: well under the fine-tuning
sweep (no backbone gradients); not measured.
"""

from lanser_jax.experiments import common as layout

FRACTIONS = (0.1, 0.2, 0.3, 0.5, 1.0)
SEEDS = (0, 1, 2)
SOURCES = ("peoples_speech", "condensed_movies")


def get_sweep(arg=None):
  arg = layout.sweep_args(arg)
  cells = []
  folds = layout.dataset_folds(arg.iemocap_protocol, arg.crema_d_split)
  for dataset, fold, exp_file, protocol in folds:
    for source in SOURCES:
      for fraction in FRACTIONS:
        for seed in SEEDS:
          cell = layout.finetune_cell(dataset, fold, exp_file, source, fraction, seed, arg,
                                      extra="probe=True", tag="probe", protocol=protocol)
          cell["axes"]["method"] = "linear_probe"
          cells.append(cell)
  return cells
