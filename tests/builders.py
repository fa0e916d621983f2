"""Small corpora and runs that tests in several folders build: labelled WAV clips and their log-mel feature
folder, a random feature folder with given labels, a pre-training workdir whose model always answers one
label, and a CREMA-D-shaped folder of WAVs."""

import json
import os
import shutil

import numpy as np
import soundfile

from lanser_jax import config_lib
from lanser_jax.audio import decode
from lanser_jax.audio import log_mel as log_mel_lib
from lanser_jax.input_pipeline import records

SR = 16000
LABELS = ["low", "high", "noise", "sweep"]  # the classes of write_clip_features
IEMOCAP = ["neutral", "happy", "sad", "angry"]


def _clip(rng, label: int, seconds: float) -> np.ndarray:
  t = np.arange(int(seconds * SR)) / SR
  if label == 0:
    x = np.sin(2 * np.pi * 300 * t)
  elif label == 1:
    x = np.sin(2 * np.pi * 2500 * t)
  elif label == 2:
    x = rng.standard_normal(t.size)
  else:
    x = np.sin(2 * np.pi * (200 + 1500 * t) * t)
  return (0.3 * x / np.max(np.abs(x)) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_clip_features(root, counts, max_seconds, train_shards, test_split=False):
  """WAVs of `_clip` under root/wav -> a log-mel feature folder root/features, as the offline features stage
  writes it (the test split, if asked, a copy of validation). (data_dir, {utt_id: wav}, {split: examples})."""
  rng = np.random.default_rng(0)
  options = log_mel_lib.LogMelOptions()
  log_mel = log_mel_lib.LogMel(options)
  wavs, examples = {}, {split: [] for split in counts}
  for split, n in counts.items():
    for i in range(n):
      utt_id, label = f"{split}-{i:03d}", i % len(LABELS)
      path = str(root / "wav" / f"{utt_id}.wav")
      os.makedirs(os.path.dirname(path), exist_ok=True)
      soundfile.write(path, _clip(rng, label, rng.uniform(0.8, max_seconds)), SR, subtype="PCM_16")
      mel = log_mel.one(decode.load(path).samples)
      examples[split].append(records.Example(utt_id, mel.astype(np.float16), label, speaker_id="s"))
      wavs[utt_id] = path
  data_dir = str(root / "features")
  records.write_split(data_dir, "train", examples["train"], train_shards, options.num_mel_bins)
  records.write_split(data_dir, "validation", examples["validation"], 1, options.num_mel_bins)
  splits = ["train", "validation"]
  if test_split:
    records.write_split(data_dir, "test", examples["validation"], 1, options.num_mel_bins)
    splits.append("test")
  records.write_dataset_info(data_dir, LABELS, options.to_json(), splits, "train")
  return data_dir, wavs, examples


def write_corpus(d, train_labels, test_labels, names=IEMOCAP, frames=40, bins=8):
  rng = np.random.default_rng(0)
  for split, labels in (("train", train_labels), ("test", test_labels)):
    examples = [records.Example(f"{split}{i}", rng.normal(size=(frames, bins)).astype(np.float16), int(y))
                for i, y in enumerate(labels)]
    records.write_split(d, split, examples, 1, bins)
  records.write_dataset_info(d, names, {"num_mel_bins": bins}, ["train", "test"])
  return d


def make_pretrain_run(path, fine, favourite, stats_file, bins=8, runner_up=None):
  """A pre-training workdir whose tiny model predicts `favourite` for every input (head bias), with
  `runner_up` second."""
  import jax
  import jax.numpy as jnp
  import orbax.checkpoint as ocp
  from lanser_jax import models
  model = models.create_model("tiny", len(fine))
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, bins)), train=False))(jax.random.key(0))
  params = jax.tree.map(np.asarray, variables["params"])
  params["head"]["kernel"] = np.zeros_like(params["head"]["kernel"])
  params["head"]["bias"] = np.where(np.arange(len(fine)) == fine.index(favourite), 5.0, 0.0).astype(np.float32)
  if runner_up:
    params["head"]["bias"][fine.index(runner_up)] = 2.0
  os.makedirs(os.path.join(path, "data"))
  ocp.PyTreeCheckpointer().save(os.path.join(path, "state"), {
      "params": params, "batch_stats": jax.tree.map(np.asarray, variables["batch_stats"])})
  config = config_lib.base_config()
  config.model.name, config.data.crop_frames, config.data.eval_hop_frames = "tiny", 32, 16
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write(config.to_json())
  json.dump(fine, open(os.path.join(path, "data", "label_names.json"), "w"))
  shutil.copyfile(stats_file, os.path.join(path, "data", "stats.json"))  # as training copies it


def write_wav(path, seconds=0.5, sr=16000, freq=440.0):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  t = np.arange(int(seconds * sr)) / sr
  soundfile.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
  return path


def make_crema_d(root, actors=range(1001, 1011)):
  for a in actors:
    for sent, emo in (("DFA", "ANG"), ("IEO", "NEU")):
      write_wav(os.path.join(root, "AudioWAV", f"{a}_{sent}_{emo}_XX.wav"), seconds=0.3)
  write_wav(os.path.join(root, "AudioWAV", "1001_DFA_BOR_XX.wav"), seconds=0.3)  # unknown label
