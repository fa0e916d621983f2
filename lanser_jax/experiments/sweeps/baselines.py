"""Baselines without fine-tuning: majority class, text only, zero-shot speech (24 cells).
From scratch is the pretrained=none axis of label_efficiency.py; the linear probe is linear_probe.py.

  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/baselines.py --root=/data/lanser/runs \
      (--print | --run | --aggregate)

majority   per dataset/fold (6): the most frequent training class of the feature folder.
text_only  per dataset/fold (6): needs the target corpus labelled with a fine taxonomy, e.g.
           python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/iemocap.py:weak=True \
               --stage=all --workdir=<data_root>/iemocap --config.labeler.taxonomy=fine40
           which writes <data_root>/iemocap/labels/ (CREMA-D likewise).
zero_shot  per source x dataset/fold (12): the pre-training runs of sweeps/pretrain.py under runs_root.
text_only and zero_shot report the argmax over the fine labels that map to a target class (restricted,
the default) and, beside it in results.json, the argmax over all labels with an unmapped winner wrong.
Arguments: data_root, runs_root, taxonomy (fine taxonomy of both; default fine40), iemocap_protocol,
crema_d_split (as label_efficiency.py), runlocal and platform (accepted for symmetry; baselines run on
whatever JAX finds).
Expected cost: seconds each (text only), minutes each (zero-shot ResNet-50 over a test split on CPU).
"""

import os

from lanser_jax.experiments import common

SOURCES = ("peoples_speech", "condensed_movies")


def get_sweep(arg=None):
  arg = common.sweep_args(arg, taxonomy="fine40")
  variant = common.weak_variant(arg.taxonomy)
  cells = []
  for dataset, fold, _, protocol in common.dataset_folds(arg.iemocap_protocol, arg.crema_d_split):
    data_dir = common.finetune_data_dir(dataset, arg.data_root, fold, protocol)
    labels_dir = f"{os.path.dirname(data_dir)}/labels"  # the labelling workdir's labels/ beside features
    target_set = common.TARGET_SETS[dataset]
    prefix = f"{dataset}/{common.protocol_part(dataset, protocol)}fold{fold}/baseline"
    axes = lambda method: {"dataset": dataset, "protocol": protocol, "fold": fold,  # noqa: E731
                           "method": method}
    cells.append({"name": f"{prefix}/majority", "axes": axes("majority"),
                  "baseline": {"kind": "majority", "data_dir": data_dir}})
    cells.append({"name": f"{prefix}/text_only", "axes": axes("text_only"),
                  "baseline": {"kind": "text_only", "data_dir": data_dir, "target_set": target_set,
                               "labels_dir": labels_dir, "taxonomy": arg.taxonomy}})
    for source in SOURCES:
      pretrain = f"{arg.runs_root}/{common.pretrain_run_name(source, variant, False)}"
      cells.append({"name": f"{prefix}/zero_shot_{source}", "axes": dict(axes(f"zero_shot_{source}")),
                    "baseline": {"kind": "zero_shot", "data_dir": data_dir, "target_set": target_set,
                                 "pretrain": pretrain, "taxonomy": arg.taxonomy}})
  return cells
