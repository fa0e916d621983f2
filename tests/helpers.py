"""What the tests share besides fixtures: the repository's path, the tiny training configuration (as a config and
as command-line flags) and a writer of audio containers. Imported by name (`from helpers import tiny_config`):
pyproject's pytest `pythonpath` puts tests/ on the path."""

import os

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The synthetic experiment's runlocal form, sized for fast tests. A constant learning rate after one warmup
# step keeps num_train_steps out of the compiled step: a cosine schedule, and a warmup capped by the step
# count, bake the step count into the program, so each test's own step count would compile its own train
# step (~20 s each on 2 cores) instead of reusing the persistent cache. tests/test_train.py trains with the
# cosine schedule and the runlocal warmup.
TINY_OVERRIDES = {
    "data.crop_frames": 64, "data.eval_hop_frames": 32, "num_train_steps": 20, "eval_every_steps": 10,
    "checkpoint_every_steps": 10, "log_every_steps": 5, "optimizer.learning_rate": 3e-3,
    "optimizer.schedule": "constant", "optimizer.warmup_steps": 1,
    "specaugment.max_time_width": 10, "specaugment.max_freq_width": 4,
}
SYNTHETIC_RUNLOCAL = "lanser_jax/experiments/synthetic.py:runlocal"


def write_audio_container(av, path, x, sr):
  """An MP4 file with one AAC audio stream (a stand-in for a movie clip's sound track)."""
  with av.open(path, "w") as c:
    stream = c.add_stream("aac", rate=sr, layout="mono")
    x = np.clip(x, -1, 1).astype(np.float32)
    for start in range(0, len(x), 1024):  # AAC frames hold 1024 samples
      frame = av.AudioFrame.from_ndarray(x[None, start:start + 1024], format="fltp", layout="mono")
      frame.sample_rate = sr
      for packet in stream.encode(frame):
        c.mux(packet)
    for packet in stream.encode(None):
      c.mux(packet)


def tiny_config(data_dir, **overrides):
  from lanser_jax import config_lib
  c = config_lib.load_experiment(os.path.join(REPO, SYNTHETIC_RUNLOCAL))
  for key, value in {"data.dir": data_dir, **TINY_OVERRIDES, **overrides}.items():
    config_lib.set_override(c, key, value)
  return c


def tiny_flags(data_dir, **overrides):
  """The same configuration as `tiny_config`, as command-line flags of lanser_jax.main."""
  return [f"--config={SYNTHETIC_RUNLOCAL}",
          *[f"--config.{k}={v}" for k, v in {"data.dir": data_dir, **TINY_OVERRIDES, **overrides}.items()]]
