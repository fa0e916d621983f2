"""LanSER fine-tuning (IEMOCAP leave-one-session-out or CREMA-D) with a spectrogram transformer (size=b16).

  python -m lanser_jax.main \
      --config=lanser_jax/experiments/finetune_spectrogram_transformer.py:dataset=iemocap,fold=1,fraction=0.1,pretrained=peoples_speech \
      --workdir=/data/lanser/runs/spectrogram_transformer/iemocap/f1/ps/0.1/s0
  ...finetune_spectrogram_transformer.py:dataset=crema_d,fraction=1.0,seed=1          # from scratch
  python -m lanser_jax.main --config=lanser_jax/experiments/finetune_spectrogram_transformer.py:runlocal,platform=cpu,fold=1 \
      --workdir=/tmp/ft_st_local --config.data.dir=/tmp/lanser_synth

Arguments: those of lanser_jax/experiments/finetune_iemocap.py (fold, fraction, seed, pretrained, taxonomy,
template, labeler, soft, probe, platform, runlocal, data_root, runs_root) plus dataset (iemocap|crema_d) and
size (b16); the default protocols only (IEMOCAP loso, CREMA-D actor_seeded). pretrained=... restores this
backbone's pre-training run (lanser_jax/experiments/pretrain_spectrogram_transformer.py: the ResNet-50 run's
workdir name with the model name appended). Data, steps, crops, label fractions and platform sizes are the ResNet-50
fine-tuning's (finetune_<dataset>.py), so a backbone comparison changes the backbone and its optimiser only;
the optimiser recipe is ours, untuned (common.BACKBONE_RECIPES states it as factors of the ResNet-50's).
Expected cost: not measured on an accelerator (its step: 4.2x ResNet-50's arithmetic per example,
benchmarks/README.md "Other backbones").
"""

from lanser_jax import config_lib
from lanser_jax.experiments import common

FAMILY = "spectrogram_transformer"
# ViT-B's AdamW state (~1 GB) fits replicated; it is split over fsdp on GPU/TPU anyway, so that larger
# sizes fit too and the sharded path is exercised (as pretrain_spectrogram_transformer.py).
# (mesh, rules): lanser_jax/engine/sharding.py.
MESH = {"cpu": ("data=-1", "replicated"), "gpu": ("data=-1,fsdp=8", "fsdp"), "tpu": ("data=-1,fsdp=4", "fsdp")}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **common.common_args(**common.FINETUNE_ARGS, fold=0, dataset="iemocap",
                                                        size="b16"))
  if arg.dataset not in common.FINETUNE_DATASETS:
    raise ValueError(f"dataset={arg.dataset!r}: expected one of {common.FINETUNE_DATASETS}")
  if arg.dataset == "crema_d" and arg.fold:
    raise ValueError("dataset=crema_d has no folds: leave fold unset")
  c = config_lib.base_config()
  c.seed = arg.seed
  c.data.dir = common.finetune_data_dir(arg.dataset, arg.data_root, arg.fold)  # the default protocol
  c.data.label_fraction = arg.fraction  # of the train split only
  c.data.subset_seed = arg.seed  # the seed also draws the label subset: seeds average over both
  c.data.crop_frames = 300  # ours: 3-s crops; utterance logits averaged over 1.5-s-hop windows
  c.data.eval_hop_frames = 150
  c.model.dropout_rate = 0.2  # ours: the labelled sets are small
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 0.05  # ours: decoupled weight decay as ViTs use (Dosovitskiy et al. 2021: 0.1)
  c.optimizer.grad_clip_norm = 1.0  # ours: global-norm clipping
  c.log_every_steps = 50
  c.keep_checkpoints = 1
  if arg.probe:  # linear probe: frozen backbone, the head alone trains
    if arg.pretrained == "none":
      raise ValueError("probe=True (linear probe) needs a pretrained backbone: set pretrained=...")
    c.freeze_backbone = True
    c.model.dropout_rate = 0.0
    c.specaugment.enabled = False
  common.set_platform(c, common.FINETUNE_PLATFORMS, arg.platform)  # batch 32 / 64 / 64, dtype, workers
  # Ours: ~30 epochs of the labelled subset, at least 600 steps so that 10% subsets are not under-trained.
  c.num_train_steps = max(600, int(30 * common.NUM_TRAIN_UTTS[arg.dataset] * arg.fraction / c.batch_size))
  c.optimizer.warmup_steps = 2 * (c.num_train_steps // 20)  # ours: twice the ResNet-50's
  c.eval_every_steps = max(100, c.num_train_steps // 15)
  c.checkpoint_every_steps = c.eval_every_steps
  # Ours: a quarter of the ResNet-50's peak (3e-4 at batch 64, 1e-2 for a linear probe, scaled with the batch).
  c.optimizer.learning_rate = (1e-2 if arg.probe else 3e-4) * (c.batch_size / 64) * 0.25
  c.model.name = common.backbone_model(FAMILY, arg.size)  # lanser_jax/models/spectrogram_transformer.py
  # This backbone's own pre-training run ("" for pretrained=none).
  c.init_from = common.pretrained_init(arg, c.model.name)
  c.sharding.mesh, c.sharding.rules = MESH[arg.platform]
  if arg.runlocal:  # the tiny size, sharded code path
    common.runlocal_backbone(c, FAMILY)
  return c
