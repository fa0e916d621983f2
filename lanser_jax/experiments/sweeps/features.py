r"""Label efficiency on any feature folder: fraction x seed x fold, from scratch and (optionally) pre-trained.

  lanser-sweep --sweep=lanser_jax/experiments/sweeps/features.py:features=DIR[,pretrain=RUN] --root=ROOT --run
  lanser-sweep --sweep=lanser_jax/experiments/sweeps/features.py:features=DIR[,pretrain=RUN] --root=ROOT --aggregate
  lanser-report ROOT

`features` is a feature folder (the features stage's output, with dataset.json; one fold, fold 0) or a folder of
feature folders, one per fold (each subfolder with a dataset.json is a fold, named by the subfolder). No Python
to write: every cell fine-tunes `experiment` with `fraction` and `seed` (the training seed and the
label-subset seed), on the fold's data.dir, from scratch (axis pretrained=none) and, when `pretrain` names a
pre-training workdir, from its backbone (pretrained=<pretrain_name>, default the workdir's name).
Arguments: features (required), pretrain, pretrain_name, fractions (default 0.1+0.3+1.0), seeds (default
0+1+2), experiment (default lanser_jax/experiments/demo_finetune.py, the demo's CPU-sized ResNet; any
experiment file that takes fraction and seed arguments and reads data.dir), steps (num_train_steps; 0 keeps
the experiment's), runlocal. Cells: [<fold>/]<pretrained>/frac<F>/seed<S>.
The aggregate reports each cell's mean ± std, intervals over seeds and test utterances, the paired
pre-trained - scratch comparison at each fraction (docs/results.md), and the training clips each fraction used.
Expected cost: fractions x seeds x folds x (1 or 2) runs; with the default experiment a run takes 10-40 s on
two CPU cores for a corpus of ~600 training clips (benchmarks/README.md).
"""

import os

from lanser_jax import config_lib
from lanser_jax.utils import fileio

DEFAULT_EXPERIMENT = "lanser_jax/experiments/demo_finetune.py"


def _list(value: str) -> list[str]:
  return [v for v in value.split("+") if v]


def feature_folds(features: str) -> list[tuple[str, str]]:
  """[(fold name, feature folder)]: the folder itself (fold '0') or its subfolders with a dataset.json."""
  if fileio.exists(os.path.join(features, "dataset.json")):
    return [("0", features)]
  if not fileio.isdir(features):
    raise FileNotFoundError(f"features={features}: no such folder; give a feature folder (with dataset.json) or "
                            "a folder of them, one per fold")
  folds = [(name, os.path.join(features, name)) for name in sorted(fileio.listdir(features))
           if fileio.exists(os.path.join(features, name, "dataset.json"))]
  if not folds:
    raise FileNotFoundError(f"features={features}: neither a feature folder (no dataset.json) nor a folder of "
                            "feature folders (no subfolder has one); run `lanser-label --stage=features` first")
  return folds


def get_sweep(arg=None):
  arg = config_lib.parse_arg(arg, features="", pretrain="", pretrain_name="", fractions="0.1+0.3+1.0",
                             seeds="0+1+2", experiment=DEFAULT_EXPERIMENT, steps=0)
  if not arg.features:
    raise ValueError("features.py needs features=<feature folder>, e.g. "
                     "--sweep=lanser_jax/experiments/sweeps/features.py:features=work/labels/features")
  folds = feature_folds(arg.features)
  inits = [("none", "")]
  if arg.pretrain:
    inits.append((arg.pretrain_name or os.path.basename(os.path.normpath(arg.pretrain)), arg.pretrain))
  cells = []
  for fold, data_dir in folds:
    for pretrained, init_from in inits:
      for fraction in (float(f) for f in _list(arg.fractions)):
        for seed in (int(s) for s in _list(arg.seeds)):
          overrides = {"data.dir": data_dir}
          if init_from:
            overrides["init_from"] = init_from
          if arg.steps:
            overrides["num_train_steps"] = arg.steps
          name = f"{fold + '/' if len(folds) > 1 else ''}{pretrained}/frac{fraction}/seed{seed}"
          spec = f"{arg.experiment}:fraction={fraction},seed={seed}{',runlocal' if arg.runlocal else ''}"
          cells.append({"name": name, "config": spec, "overrides": overrides,
                        "axes": {"fold": fold, "pretrained": pretrained, "fraction": fraction, "seed": seed}})
  return cells
