"""Smoke experiment on generated features (lanser_jax/input_pipeline/synthetic.py): the engine end to end, no corpus.

  python -m lanser_jax.input_pipeline.synthetic --out=/tmp/lanser_synth
  python -m lanser_jax.main --config=lanser_jax/experiments/synthetic.py:runlocal --workdir=/tmp/lanser_synth_run \
      --config.data.dir=/tmp/lanser_synth

Without `runlocal` it trains a ResNet-50 on the same data (minutes per hundred steps on CPU).
Arguments: runlocal, soft (train on the score vectors instead of the hard labels).
"""

from lanser_jax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, soft=False)
  c = config_lib.base_config()
  c.data.dir = "/tmp/lanser_synth"
  c.data.target = "scores" if arg.soft else "label"
  c.num_train_steps = 200
  c.batch_size = 32
  c.eval_every_steps = 100
  c.checkpoint_every_steps = 100
  return config_lib.finalize(c, arg)
