r"""Label efficiency on any feature folder or EmoBox corpus: fraction x seed x fold, from scratch and pre-trained.

  lanser-sweep --sweep=lanser_jax/experiments/sweeps/features.py:features=DIR[,pretrain=RUN] --root=ROOT --run
  lanser-sweep --sweep=lanser_jax/experiments/sweeps/features.py:emobox=ravdess,emobox_root=/src/EmoBox \
      --root=ROOT --run
  lanser-sweep --sweep=lanser_jax/experiments/sweeps/features.py:features=DIR[,pretrain=RUN] --root=ROOT --aggregate
  lanser-report ROOT

`features` is a feature folder (the features stage's output, with dataset.json; one fold, fold 0) or a folder of
feature folders, one per fold, such as a labelling workdir with every fold of a protocol (each subfolder with a
dataset.json is a fold, named fold<K> after its dataset.json's protocol fold, else after the subfolder). A folder
that holds the folds of several protocols needs protocol=<name> to pick one.
`emobox` instead names an EmoBox corpus (a folder of EmoBox's data/, e.g. ravdess, emodb, msppodcast) and
`emobox_root` the user's EmoBox checkout (data/ with the fold files, and downloads/ with the audio unless
`audio_root` says where): `--run` first labels the corpus with lanser_jax/experiments/labeling/emobox.py into
`labels` (default <ROOT>/labels/emobox_<corpus>), one feature folder per EmoBox fold, then runs the cells on
EmoBox's own folds (fold1..K). `--print` shows that labelling command first.
No Python to write: every cell fine-tunes `experiment` with `fraction` and `seed` (the training seed and the
label-subset seed), on the fold's data.dir, from scratch (axis pretrained=none) and, when `pretrain` names a
pre-training workdir, from its backbone (pretrained=<pretrain_name>, default the workdir's name).
Arguments: features or emobox (with emobox_root, audio_root, labels), protocol, pretrain, pretrain_name,
fractions (default 0.1+0.3+1.0), seeds (default 0+1+2), experiment (default
lanser_jax/experiments/demo_finetune.py, the demo's CPU-sized ResNet; any experiment file that takes fraction
and seed arguments and reads data.dir), steps (num_train_steps; 0 keeps the experiment's), runlocal.
Cells: [<fold>/]<pretrained>/frac<F>/seed<S>.
The aggregate reports each cell's mean ± std, intervals over seeds and test utterances, the paired
pre-trained - scratch comparison at each fraction (docs/results.md), and the training clips each fraction used.
Expected cost: fractions x seeds x folds x (1 or 2) runs; with the default experiment a run takes 10-40 s on
two CPU cores for a corpus of ~600 training clips (benchmarks/README.md).
"""

import os

from lanser_jax import config_lib
from lanser_jax.utils import fileio

DEFAULT_EXPERIMENT = "lanser_jax/experiments/demo_finetune.py"
EMOBOX_LABELLING = "lanser_jax/experiments/labeling/emobox.py"


def _list(value: str) -> list[str]:
  return [v for v in value.split("+") if v]


def _protocol(folder: str) -> dict:
  info = fileio.read_json(os.path.join(folder, "dataset.json"))
  protocol = info.get("protocol") if isinstance(info, dict) else None
  return protocol if isinstance(protocol, dict) else {}


def feature_folds(features: str, protocol: str = "") -> list[tuple[str, str]]:
  """[(fold name, feature folder)]: the folder itself (fold '0') or its subfolders with a dataset.json, of one
  protocol (`protocol`, or the only one there); fold<K> when dataset.json names the fold, else the subfolder."""
  if fileio.exists(os.path.join(features, "dataset.json")):
    return [("0", features)]
  if not fileio.isdir(features):
    raise FileNotFoundError(f"features={features}: no such folder; give a feature folder (with dataset.json) or "
                            "a folder of them, one per fold")
  found = [(name, os.path.join(features, name)) for name in sorted(fileio.listdir(features))
           if fileio.exists(os.path.join(features, name, "dataset.json"))]
  if not found:
    raise FileNotFoundError(f"features={features}: neither a feature folder (no dataset.json) nor a folder of "
                            "feature folders (no subfolder has one); run `lanser-label --stage=features` first")
  by_protocol: dict[str, list[tuple[str, str, dict]]] = {}
  for name, folder in found:
    spec = _protocol(folder)
    by_protocol.setdefault(str(spec.get("name", "")), []).append((name, folder, spec))
  if protocol:
    if protocol not in by_protocol:
      raise FileNotFoundError(f"features={features}: no feature folder of protocol={protocol!r}; its folders' "
                              f"protocols are {sorted(by_protocol)}")
    chosen = by_protocol[protocol]
  elif len(by_protocol) > 1:
    raise ValueError(f"features={features} holds the folds of {len(by_protocol)} protocols "
                     f"{sorted(p or '(none)' for p in by_protocol)}; pick one with protocol=<name>")
  else:
    chosen = next(iter(by_protocol.values()))
  numbered = [(f"fold{int(spec['fold'])}" if spec.get("fold") else name, folder) for name, folder, spec in chosen]
  if len({n for n, _ in numbered}) < len(numbered):  # two folders of the same fold (e.g. relabelled copies)
    numbered = [(name, folder) for name, folder, _ in chosen]
  return sorted(numbered, key=lambda f: (len(f[0]), f[0]))


def emobox_folds(arg, root: str | None) -> tuple[list[tuple[str, str]], dict]:
  """The feature folders (one per EmoBox fold, made by `--run` when missing) and the labelling that makes
  them: {"config": emobox.py spec, "workdir": labels folder}."""
  from lanser_jax.corpora import emobox, folds  # pylint: disable=import-outside-toplevel
  if not arg.emobox_root:
    raise ValueError(f"emobox={arg.emobox} needs emobox_root=<your EmoBox checkout> (the folder with EmoBox's "
                     "data/ fold files and, unless audio_root= says otherwise, its downloads/)")
  for key in ("emobox_root", "audio_root"):
    if "," in arg[key]:
      raise ValueError(f"{key}={arg[key]!r}: a path with a comma cannot be passed on to the labelling config")
  num = emobox.num_folds(arg.emobox_root, arg.emobox)  # an unknown corpus names the checkout's corpora
  labels = arg.labels or (os.path.join(root, "labels", f"emobox_{arg.emobox}") if root else "")
  if not labels:
    raise ValueError(f"emobox={arg.emobox}: give --root (labels go to <root>/labels/emobox_{arg.emobox}) or "
                     "labels=<folder>")
  spec = f"{EMOBOX_LABELLING}:dataset={arg.emobox},emobox_dir={arg.emobox_root}"
  if arg.audio_root:
    spec += f",audio_root={arg.audio_root}"
  return ([(f"fold{k}", os.path.join(labels, folds.features_name("features_emobox", k))) for k in range(1, num + 1)],
          {"config": spec, "workdir": labels})


def get_sweep(arg=None, root=None):
  arg = config_lib.parse_arg(arg, features="", emobox="", emobox_root="", audio_root="", labels="", protocol="",
                             pretrain="", pretrain_name="", fractions="0.1+0.3+1.0", seeds="0+1+2",
                             experiment=DEFAULT_EXPERIMENT, steps=0)
  labelling = None
  if arg.emobox:
    if arg.features:
      raise ValueError("features.py: give features=<feature folder> or emobox=<EmoBox corpus>, not both")
    folds, labelling = emobox_folds(arg, root)
  elif arg.features:
    folds = feature_folds(arg.features, arg.protocol)
  else:
    raise ValueError("features.py needs features=<feature folder>, e.g. "
                     "--sweep=lanser_jax/experiments/sweeps/features.py:features=work/labels/features, or "
                     "emobox=<EmoBox corpus>,emobox_root=<EmoBox checkout>")
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
          cell = {"name": name, "config": spec, "overrides": overrides,
                  "axes": {"fold": fold, "pretrained": pretrained, "fraction": fraction, "seed": seed}}
          if labelling:
            cell["labels"] = labelling
          cells.append(cell)
  return cells
