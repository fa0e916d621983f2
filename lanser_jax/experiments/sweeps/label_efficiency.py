"""The LanSER label-efficiency grid: fraction x pre-training source x seed x dataset/fold (270 cells).

  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/label_efficiency.py:platform=gpu \
      --root=/data/lanser/runs --print                 # the 270 commands (e.g. for a job array)
  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/label_efficiency.py:platform=gpu \
      --root=/data/lanser/runs --run [--only=dataset=crema_d --only=fraction=0.1,0.2]
  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/label_efficiency.py --root=/data/lanser/runs \
      --aggregate                                      # aggregate.md/.csv + ua_vs_fraction.png

Run lanser_jax/experiments/sweeps/pretrain.py first with the same --root: the fine-tuning cells start from
<root>/pretrain_<source>_fine40-conversation-entailment_hard (runs_root must equal --root).
Axes: dataset (iemocap, crema_d), fold (IEMOCAP sessions 1..5; 0 for CREMA-D), pretrained (none =
from scratch, peoples_speech, condensed_movies), fraction (paper: 10%..100%; these five are ours), seed
(0, 1, 2: the training seed and the label-subset seed). The aggregate averages over seeds and folds.
Arguments: platform, runlocal, data_root, runs_root, iemocap_protocol (loso, the default, | loso_spkval |
lospk: 10 folds, 495 cells | emobox) and crema_d_split (actor_seeded, the default, | tfds | emobox); see
docs/experiments.md "Evaluation protocols". Cells of a non-default protocol are named <dataset>/<protocol>/fold<K>/...
Expected cost: 270 fine-tuning runs of 600..2,437 steps of batch 64, 17.4M examples in all: ~20
H200-minutes of train steps at the measured 14,620 examples/s (ResNet-50, bfloat16, batch 256, one H200;
benchmarks/README.md). Each run also starts, compiles (22.9 s for the bfloat16 step at batch 256 on the
H200, same table: ~1.7 h for 270 runs) and evaluates; that overhead is not measured and likely dominates.
"""

from lanser_jax.experiments import common


FRACTIONS = (0.1, 0.2, 0.3, 0.5, 1.0)
SEEDS = (0, 1, 2)
SOURCES = ("none", "peoples_speech", "condensed_movies")


def get_sweep(arg=None):
  arg = common.sweep_args(arg)
  folds = common.dataset_folds(arg.iemocap_protocol, arg.crema_d_split)
  return [common.finetune_cell(dataset, fold, exp_file, source, fraction, seed, arg, protocol=protocol)
          for dataset, fold, exp_file, protocol in folds
          for source in SOURCES for fraction in FRACTIONS for seed in SEEDS]
