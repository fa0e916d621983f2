"""Backbones x label fractions: ResNet-50, Conformer-S and the spectrogram transformer (ViT-B/16 encoder),
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
Expected cost: not measured on an accelerator for the transformers. Per example, a Conformer-S train step
costs 0.6x and the spectrogram transformer's 4.2x ResNet-50's arithmetic (XLA's count; benchmarks/README.md
"Other backbones"); the ResNet-50 cells are as label_efficiency.py's (3.9M examples here, ~4 H200-minutes of
train steps at the measured 14,620 examples/s, bfloat16, batch 256).
"""

from lanser_jax.experiments import common

FRACTIONS = (0.1, 0.2, 0.3, 0.5, 1.0)
SEEDS = (0,)
SOURCES = ("none", "peoples_speech")
# backbone (a model name) -> its family and its size argument; resnet50 runs the ResNet-50 files.
BACKBONES = {"resnet50": ("", ""), "conformer_s": ("conformer", "s"),
             "spectrogram_transformer_b16": ("spectrogram_transformer", "b16")}
VARIANT = common.weak_variant()


def _pretrain_cell(backbone, arg):
  family, size = BACKBONES[backbone]
  if family:
    exp_file, model = f"lanser_jax/experiments/pretrain_{family}.py", common.backbone_model(family, size)
  else:
    exp_file, model = common.PRETRAIN_FILES["peoples_speech"], ""
  args = dict(platform=arg.platform, data_root=arg.data_root, **({"size": size} if size else {}))
  return {"name": common.pretrain_run_name("peoples_speech", VARIANT, False, model),
          "config": common.experiment_spec(exp_file, args, arg.runlocal),
          "axes": {"stage": "pretrain", "backbone": backbone}}


def _finetune_cell(backbone, dataset, fold, source, fraction, seed, arg):
  family, size = BACKBONES[backbone]
  if family:
    # The backbone files run the default protocols only (loso, actor_seeded): they take dataset and fold,
    # no protocol or split argument.
    cell = common.finetune_cell(dataset, fold, f"lanser_jax/experiments/finetune_{family}.py", source, fraction,
                                seed, arg, extra={"dataset": dataset, "size": size}, tag=backbone,
                                data_args={"fold": fold} if dataset == "iemocap" else {})
  else:
    cell = common.finetune_cell(dataset, fold, common.FINETUNE_FILES[dataset], source, fraction, seed, arg)
  cell["axes"].update(stage="finetune", backbone=backbone)
  return cell


def get_sweep(arg=None):
  arg = common.sweep_args(arg)
  cells = [_pretrain_cell(b, arg) for b in BACKBONES]
  cells += [_finetune_cell(b, dataset, fold, source, fraction, seed, arg)
            for b in BACKBONES for dataset, fold, _, _ in common.dataset_folds()
            for source in SOURCES for fraction in FRACTIONS for seed in SEEDS]
  return cells
