"""Generated feature folders with a learnable class signal, for tests, benchmarks and smoke runs.

Each class raises a band of mel bins and modulates it at its own rate over time, on top of noise, so a small
CNN separates the classes within a few dozen steps while a constant predictor stays at chance. Utterance
lengths vary, so cropping, padding and sliding-window evaluation are all exercised.

  lanser-synthetic --out=/tmp/synth --num_train=512
  (or python -m lanser_jax.input_pipeline.synthetic ...)
"""

from __future__ import annotations

from typing import Sequence

from absl import app, flags
import numpy as np

from lanser_jax.input_pipeline import records
from lanser_jax.utils import cli


def _example(rng: np.random.Generator, utt_id: str, label: int, num_classes: int, mel_bins: int,
             frames: int, speaker: str, soft: bool) -> records.Example:
  x = rng.normal(0.0, 1.0, (frames, mel_bins)).astype(np.float32) - 4.0
  band = np.arange(mel_bins)
  center = (label + 0.5) * mel_bins / num_classes
  profile = np.exp(-0.5 * ((band - center) / (mel_bins / (2.5 * num_classes)))**2)
  t = np.arange(frames)
  modulation = 1.0 + 0.5 * np.sin(2 * np.pi * t * (0.02 + 0.01 * label) + rng.uniform(0, 2 * np.pi))
  x += 3.0 * modulation[:, None] * profile[None, :]
  scores = None
  if soft:  # a noisy score vector whose argmax is the label, like an entailment labeler's output
    scores = rng.dirichlet(np.ones(num_classes)).astype(np.float32) * 0.5
    scores[label] += 0.6
  return records.Example(utt_id=utt_id, log_mel=x.astype(np.float16), label=label, scores=scores,
                         speaker_id=speaker)


def write_synthetic(out_dir: str, *, num_classes: int = 4, mel_bins: int = 64,
                    num_train: int = 256, num_eval: int = 64, min_frames: int = 40,
                    max_frames: int = 400, num_shards: int = 2, soft: bool = True,
                    seed: int = 0) -> dict:
  """Writes train/validation/test splits and dataset.json + stats.json; returns dataset info."""
  rng = np.random.default_rng(seed)
  label_names = [f"class{i}" for i in range(num_classes)]
  sizes = {"train": num_train, "validation": num_eval, "test": num_eval}
  for s, (split, n) in enumerate(sizes.items()):
    examples = [
        _example(rng, f"{split}-{i:06d}", i % num_classes, num_classes, mel_bins,
                 int(rng.integers(min_frames, max_frames + 1)), f"spk{s}{i % 5}", soft)
        for i in range(n)
    ]
    records.write_split(out_dir, split, examples, num_shards if split == "train" else 1, mel_bins)
  feature = {"sample_rate": 16000, "win_ms": 25.0, "hop_ms": 10.0, "num_mel_bins": mel_bins,
             "source": "lanser_jax.input_pipeline.synthetic"}
  return records.write_dataset_info(out_dir, label_names, feature, sizes, stats_split="train",
                                    score_names=label_names if soft else None)


FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_OUT = flags.DEFINE_string("out", None, "Output feature folder.", flag_values=FLAGS)
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 4, "Classes (class0, class1, ...).", flag_values=FLAGS)
_MEL_BINS = flags.DEFINE_integer("mel_bins", 64, "Mel bins per frame.", flag_values=FLAGS)
_NUM_TRAIN = flags.DEFINE_integer("num_train", 256, "Utterances in the train split.", flag_values=FLAGS)
_NUM_EVAL = flags.DEFINE_integer("num_eval", 64, "Utterances in each of validation and test.", flag_values=FLAGS)
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 2, "Shard files of the train split.", flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generated data.", flag_values=FLAGS)
flags.mark_flags_as_required(["out"], flag_values=FLAGS)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  info = write_synthetic(_OUT.value, num_classes=_NUM_CLASSES.value, mel_bins=_MEL_BINS.value,
                         num_train=_NUM_TRAIN.value, num_eval=_NUM_EVAL.value, num_shards=_NUM_SHARDS.value,
                         seed=_SEED.value)
  print(f"wrote {_OUT.value}: {info['splits']}")
  return 0


def run():
  """The `lanser-synthetic` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
