"""The trained run that the serving tests beside test_classifier.py share: a tiny ResNet trained for a few
steps on one device, on log-mel features of generated WAV clips (tests/builders.py), and long recordings
made of those clips."""

import numpy as np
import pytest
import soundfile

from builders import SR, write_clip_features
from helpers import tiny_config
from lanser_jax import train


@pytest.fixture(scope="session")
def served_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("served")
  data_dir, wavs, examples = write_clip_features(root, {"train": 16, "validation": 8}, 2.2, train_shards=1)
  workdir = str(root / "run")
  train.train_and_evaluate(
      tiny_config(data_dir, num_train_steps=10, eval_every_steps=10, **{"data.test_split": ""}), workdir)
  return {"workdir": workdir, "wavs": wavs, "root": root, "validation": examples["validation"],
          "data_dir": data_dir}


def long_recording(path, wavs, seconds, sr=SR, gap=0.6):
  """The validation clips one after another with `gap` s of near-silence between them, repeated to
  `seconds`; returns [(start, end)] in seconds of each clip placed."""
  clips = [soundfile.read(p, dtype="float32")[0] for p in sorted(wavs.values())]
  rng = np.random.default_rng(0)
  parts, spans, t = [], [], 0.0
  while t < seconds:
    for c in clips:
      parts.append(c)
      spans.append((t, t + len(c) / sr))
      t += len(c) / sr
      quiet = (1e-3 * rng.standard_normal(int(gap * sr))).astype(np.float32)
      parts.append(quiet)
      t += gap
      if t >= seconds:
        break
  soundfile.write(path, np.concatenate(parts)[:int(seconds * sr)], sr, subtype="PCM_16")
  return [s for s in spans if s[1] <= seconds]
