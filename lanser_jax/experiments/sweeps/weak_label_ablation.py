"""Weak-label ablations downstream: fine-tuning from each People's Speech pre-training variant of
lanser_jax/experiments/sweeps/pretrain.py:ablations=True (taxonomy, prompt template, hard vs soft, labeler).

  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/pretrain.py:platform=gpu,ablations=True \
      --root=/data/lanser/runs --run                                        # the 6 pre-training runs
  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/weak_label_ablation.py:platform=gpu \
      --root=/data/lanser/runs (--print | --run | --aggregate)

Cells: 6 variants x fractions (0.1, 1.0: ours, the two ends of the curve) x 3 seeds x 6 dataset/folds
= 216. Axes add `variant` (<taxonomy>-<template>-<labeler>) and `target` (hard|soft), so the aggregate
has one row per variant, fraction and dataset. Arguments: platform, runlocal, data_root, runs_root,
iemocap_protocol, crema_d_split (as label_efficiency.py).
Expected cost: 216 fine-tuning runs, 18.8M examples in all: ~21 H200-minutes of train steps at the
measured 14,620 examples/s (ResNet-50, bfloat16, batch 256, one H200; benchmarks/README.md), plus each
run's start-up, compilation and evaluation (see label_efficiency.py; not measured).
"""

from lanser_jax.experiments import common

FRACTIONS = (0.1, 1.0)
SEEDS = (0, 1, 2)
VARIANTS = ({}, {"taxonomy": "ekman7"}, {"soft": True}, {"template": "speaker"}, {"template": "i_feel"},
            {"labeler": "sentence_encoder"})  # as lanser_jax/experiments/sweeps/pretrain.py ABLATIONS, plus the base


def get_sweep(arg=None):
  arg = common.sweep_args(arg)
  cells = []
  folds = common.dataset_folds(arg.iemocap_protocol, arg.crema_d_split)
  for setting in VARIANTS:
    s = dict(common.WEAK_LABEL_ARGS, **setting)
    variant = common.weak_variant(s["taxonomy"], s["template"], s["labeler"])
    target = "soft" if s["soft"] else "hard"
    for dataset, fold, exp_file, protocol in folds:
      for fraction in FRACTIONS:
        for seed in SEEDS:
          cell = common.finetune_cell(dataset, fold, exp_file, "peoples_speech", fraction, seed, arg,
                                      extra=s, tag=f"ablation/{variant}_{target}", protocol=protocol)
          cell["axes"].update(variant=variant, target=target)
          cells.append(cell)
  return cells
