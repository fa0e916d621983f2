"""Demo fine-tuning on the synthesised CREMA-D-style corpus, from the demo pre-training or from scratch.

  python -m lanser_jax.main --config=lanser_jax/experiments/demo_finetune.py:fraction=0.1 --workdir=WORK/ft_pre_0.1 \
      --config.data.dir=WORK/labels_labelled/features --config.init_from=WORK/pretrain
  python -m lanser_jax.main --config=lanser_jax/experiments/demo_finetune.py:fraction=0.1 --workdir=WORK/ft_scratch_0.1 \
      --config.data.dir=WORK/labels_labelled/features

Arguments: fraction (of the training labels; nested stratified subsets), seed, runlocal, backbone
(resnet18_w0.25 | conformer_tiny | spectrogram_transformer_tiny, as in lanser_jax/experiments/demo_pretrain.py;
init_from must be that backbone's run).
Steps scale with the fraction (at least 60) so small subsets are not over-trained.
"""

from lanser_jax import config_lib
from lanser_jax.experiments import common


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, fraction=1.0, seed=0, backbone=common.DEMO_RESNET)
  c = config_lib.base_config()
  c.seed = arg.seed
  c.data.label_fraction = arg.fraction
  c.data.subset_seed = arg.seed
  c.data.crop_frames = 200
  c.data.eval_hop_frames = 100
  c.data.num_workers = 0
  c.model.name = "resnet18"
  c.model.width = 0.25
  c.batch_size = 32
  c.eval_batch_size = 64
  c.num_train_steps = max(60, int(200 * arg.fraction))
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 10
  c.log_every_steps = 20
  c.eval_every_steps = max(20, c.num_train_steps // 4)
  c.checkpoint_every_steps = c.eval_every_steps
  c.keep_checkpoints = 1
  c = config_lib.finalize(c, arg)
  return common.demo_backbone(c, arg.backbone)
