"""Fine-tuning on IEMOCAP (4 classes: neutral, happy+excited, sad, angry), one fold of one protocol.

  # features first: lanser_jax/experiments/labeling/iemocap.py:fold=K writes <data_root>/iemocap/features_foldK
  # (protocol=P,fold=K: features_P_foldK); this file reads the folder of the same protocol and fold:
  # from a LanSER pre-training run (init_from = <runs_root>/pretrain_peoples_speech_fine40-...-hard):
  python -m lanser_jax.main \
      --config=lanser_jax/experiments/finetune_iemocap.py:fold=1,fraction=0.1,seed=0,pretrained=peoples_speech \
      --workdir=/data/lanser/runs/iemocap/f1/ps/0.1/s0
  # from scratch (pretrained=none, the default) and a linear probe of the frozen backbone:
  ...finetune_iemocap.py:fold=1,fraction=1.0,seed=0
  ...finetune_iemocap.py:fold=1,fraction=1.0,seed=0,pretrained=condensed_movies,probe=True
  ...finetune_iemocap.py:protocol=lospk,fold=7,fraction=0.1,seed=0                # speaker 7 of 10
  # every fold x fraction x source x seed: python -m lanser_jax.tools.sweep (lanser_jax/experiments/sweeps/)
  python -m lanser_jax.main --config=lanser_jax/experiments/finetune_iemocap.py:runlocal,platform=cpu,fold=1 \
      --workdir=/tmp/ft_local --config.data.dir=/tmp/lanser_synth

Arguments: protocol (loso, the default: test = the held-out session, validation = a stratified 20% of
the training sessions, as s3prl SUPERB ER | loso_spkval | lospk | emobox; see lanser_jax/experiments/labeling/
iemocap.py), fold (required: 1..5, or 1..10 for lospk), fraction (of the train split only), seed
(training seed and label-subset seed), pretrained (none|peoples_speech|condensed_movies),
taxonomy/template/labeler/soft (which pre-training run), probe, platform, runlocal, data_root, runs_root. Ours: ~30 epochs of the labelled subset (at least 600 steps), AdamW 3e-4 at batch
64, dropout 0.2, 3-s crops, utterance logits averaged over 1.5-s-hop windows.
Expected cost: 600..2,100 steps of batch 64; minutes on one GPU (not measured); on 2 CPU cores ~4 min
per 100 steps of ResNet-50 (PERF_NOTES), so only runlocal there.
"""

from lanser_jax import config_lib
from lanser_jax.experiments import common as layout

# ~4,400 training utterances per fold (4 of the 5 sessions of the 5,531 kept; loso's validation takes
# 20% of them, so ~3,500 train; lospk trains on the same four sessions).
NUM_TRAIN_UTTS = 4400
# Arguments (with platform, data_root, runs_root) of this file and of lanser_jax/experiments/finetune_crema_d.py.
ARGS = dict(fraction=1.0, seed=0, pretrained="none", taxonomy="fine40", template="conversation",
            labeler="entailment", soft=False, probe=False)
# Per platform (ours): global batch, evaluation batch, compute dtype, Grain workers per host.
PLATFORMS = {
    "cpu": dict(batch_size=32, eval_batch_size=64, dtype="float32", num_workers=1),
    "gpu": dict(batch_size=64, eval_batch_size=256, dtype="bfloat16", num_workers=8),
    "tpu": dict(batch_size=64, eval_batch_size=512, dtype="bfloat16", num_workers=16),
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **layout.common_args(**ARGS, fold=0, protocol="loso"))
  return finetune(arg, layout.finetune_data_dir("iemocap", arg.data_root, arg.fold, arg.protocol),
                  NUM_TRAIN_UTTS)


def finetune(arg, data_dir: str, num_train_utts: int):
  """Fine-tuning of a ResNet-50 on `data_dir`; lanser_jax/experiments/finetune_crema_d.py runs it with its own folder
  and training-set size."""
  c = config_lib.base_config()
  c.seed = arg.seed
  c.data.dir = data_dir
  c.data.label_fraction = arg.fraction  # of the train split only
  c.data.subset_seed = arg.seed  # the seed also draws the label subset: seeds average over both
  c.data.crop_frames = 300  # ours: 3-s crops; utterance logits averaged over 1.5-s-hop windows
  c.data.eval_hop_frames = 150
  c.model.name = "resnet50"  # paper
  c.model.dropout_rate = 0.2  # ours: the labelled sets are small
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 1e-4
  c.log_every_steps = 50
  c.keep_checkpoints = 1
  if arg.pretrained != "none":  # the pre-training run of lanser_jax/experiments/pretrain_<pretrained>.py
    variant = layout.weak_variant(arg.taxonomy, arg.template, arg.labeler)
    c.init_from = f"{arg.runs_root}/{layout.pretrain_run_name(arg.pretrained, variant, arg.soft)}"
    c.init_from_step = "best"
  if arg.probe:  # linear probe: frozen backbone, the head alone trains
    if arg.pretrained == "none":
      raise ValueError("probe=True (linear probe) needs a pretrained backbone: set pretrained=...")
    c.freeze_backbone = True
    c.model.dropout_rate = 0.0
    c.specaugment.enabled = False
  platform = config_lib.choose(PLATFORMS, arg.platform, "platform")
  c.batch_size = platform["batch_size"]
  c.eval_batch_size = platform["eval_batch_size"]
  c.dtype = platform["dtype"]
  c.data.num_workers = platform["num_workers"]
  # Ours: ~30 epochs of the labelled subset, at least 600 steps so that 10% subsets are not under-trained.
  c.num_train_steps = max(600, int(30 * num_train_utts * arg.fraction / c.batch_size))
  c.optimizer.warmup_steps = c.num_train_steps // 20
  c.eval_every_steps = max(100, c.num_train_steps // 15)
  c.checkpoint_every_steps = c.eval_every_steps
  # Ours: AdamW 3e-4 at batch 64 (a linear head on fixed features takes a larger step, 1e-2), scaled
  # linearly with the global batch.
  c.optimizer.learning_rate = (1e-2 if arg.probe else 3e-4) * (c.batch_size / 64)
  return config_lib.finalize(c, arg)
