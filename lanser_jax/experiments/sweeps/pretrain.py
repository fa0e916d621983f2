"""Pre-training runs: People's Speech and Condensed Movies (2 cells), plus the weak-label ablations
(ablations=True: 5 more People's Speech runs, one setting changed each).

  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/pretrain.py:platform=tpu --root=/data/lanser/runs --run
  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/pretrain.py:platform=gpu,ablations=True \
      --root=/data/lanser/runs --print

Cell names are the workdirs the fine-tuning configs restore from (common.pretrain_run_name), so
use the --root that the fine-tuning sweeps get as runs_root. Each cell needs its labelling first:
<data_root>/<source>/<taxonomy>-<template>-<labeler>/features (see lanser_jax/experiments/common.py).
Arguments: platform, runlocal, data_root, ablations.
Expected cost (platform=gpu; see the experiment files): 51.2M (People's Speech) and 15.4M (Condensed
Movies) crops, ~1.0 H200-hour and ~18 H200-minutes of train steps at the measured 14,620 examples/s
(ResNet-50, bfloat16, batch 256, one H200; benchmarks/README.md); ablations=True adds five People's Speech
runs (~5 H200-hours). Evaluation and the rate at 64 examples per device of an 8-GPU node are not measured.
"""


from lanser_jax import config_lib
from lanser_jax.experiments import common

# One setting changed each (the paper's weak-label ablations; the particular alternatives are ours).
ABLATIONS = (
    {"taxonomy": "ekman7"},
    {"soft": True},
    {"template": "speaker"},
    {"template": "i_feel"},
    {"labeler": "sentence_encoder"},
)


def get_sweep(arg=None):
  arg = config_lib.parse_arg(arg, platform="gpu", data_root=common.data_root(), ablations=False)
  cells = [common.pretrain_cell(source, {}, arg) for source in common.PRETRAIN_SOURCES]
  if arg.ablations:
    cells += [common.pretrain_cell("peoples_speech", setting, arg) for setting in ABLATIONS]
  return cells
