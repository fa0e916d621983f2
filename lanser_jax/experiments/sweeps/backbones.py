"""Backbones x label fractions: ResNet-50, Conformer-S and the ViT-B/16-like spectrogram transformer,
each pre-trained on People's Speech weak labels and fine-tuned (or trained from scratch) on 10%..100% of
the IEMOCAP (5 folds) and CREMA-D labels. The paper's open question: does a higher-capacity backbone use
the weak labels better?

  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/backbones.py:platform=gpu --root=/data/lanser/runs --print
  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/backbones.py:platform=gpu --root=/data/lanser/runs \
      --run --only=stage=pretrain              # the 3 pre-training runs first
  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/backbones.py:platform=gpu --root=/data/lanser/runs \
      --run --only=stage=finetune --only=backbone=conformer_s
  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/backbones.py --root=/data/lanser/runs --aggregate

Cells: 3 pre-training + 3 backbones x 2 sources (none, peoples_speech) x 5 fractions x 6 dataset/folds x
1 seed = 183. The ResNet-50 cells are the label-efficiency sweep's own (same names, so a root that already
holds them skips them). Arguments: platform, runlocal, data_root, runs_root (= --root).
Expected cost: not measured; the transformer runs cost more than ResNet-50 per step (benchmarks/train_step.py).
"""

from lanser_jax.experiments import common as layout

FRACTIONS = (0.1, 0.2, 0.3, 0.5, 1.0)
SEEDS = (0,)
SOURCES = ("none", "peoples_speech")
# backbone name -> (pre-training file, fine-tuning files by dataset, extra experiment argument)
BACKBONES = {
    "resnet50": ("lanser_jax/experiments/pretrain_peoples_speech.py",
                 {"iemocap": "lanser_jax/experiments/finetune_iemocap.py", "crema_d": "lanser_jax/experiments/finetune_crema_d.py"},
                 ""),
    "conformer_s": ("lanser_jax/experiments/pretrain_conformer.py", None, "size=s"),
    "ast": ("lanser_jax/experiments/pretrain_ast.py", None, "size=b16"),
}
VARIANT = layout.weak_variant()


def _pretrain_cell(backbone, arg):
  file, _, extra = BACKBONES[backbone]
  name = layout.pretrain_run_name("peoples_speech", VARIANT, False)
  if backbone != "resnet50":
    name += f"_{backbone}"
  spec = (f"{file}:platform={arg.platform},data_root={arg.data_root}" + (f",{extra}" if extra else "")
          + (",runlocal" if arg.runlocal else ""))
  return {"name": name, "config": spec, "axes": {"stage": "pretrain", "backbone": backbone}}


def _finetune_cell(backbone, dataset, fold, source, fraction, seed, arg):
  _, files, extra = BACKBONES[backbone]
  if files:
    cell = layout.finetune_cell(dataset, fold, files[dataset], source, fraction, seed, arg)
  else:
    family = "conformer" if backbone.startswith("conformer") else "ast"
    cell = layout.finetune_cell(dataset, fold, f"lanser_jax/experiments/finetune_{family}.py", source, fraction,
                                        seed, arg, extra=f"dataset={dataset},{extra}", tag=backbone)
    # The backbone files run the default protocols only (loso, actor_seeded); they take no protocol argument.
    cell["config"] = cell["config"].replace(",protocol=loso,", ",").replace("split=actor_seeded,", "")
  cell["axes"].update(stage="finetune", backbone=backbone)
  return cell


def get_sweep(arg=None):
  arg = layout.sweep_args(arg)
  cells = [_pretrain_cell(b, arg) for b in BACKBONES]
  cells += [_finetune_cell(b, dataset, fold, source, fraction, seed, arg)
            for b in BACKBONES for dataset, fold, _, _ in layout.dataset_folds()
            for source in SOURCES for fraction in FRACTIONS for seed in SEEDS]
  return cells
