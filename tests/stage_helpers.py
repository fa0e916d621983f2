"""Fakes and builders the stage tests share: an ASR model and a labeler that are told what to say, tones, a
folder of good and bad audio files, a small labelling config, and a reader of the records a run wrote."""

import os

import numpy as np
import soundfile

from lanser_jax.input_pipeline import records
from lanser_jax.stages import chain
from lanser_jax.stages import defaults


class FakeTranscriber:
  """Text chosen by the clip's peak level, so tests can steer what the label stage sees."""

  def transcribe(self, waves):
    out = []
    for w in waves:
      peak = float(np.max(np.abs(w)))
      text, no_speech = {5: ("I am so happy today", 0.01), 7: ("this makes me so angry", 0.02),
                         3: ("", 0.1), 2: ("hmm", 0.95)}[int(round(peak * 10))]
      out.append({"text": text, "language": "en", "avg_logprob": -0.2,
                  "no_speech_prob": no_speech, "compression_ratio": 1.0})
    return out


class FakeLabeler:
  label_names = ["anger", "joy", "sadness"]

  def score(self, texts):
    s = np.full((len(texts), 3), 0.1, np.float32)
    for i, t in enumerate(texts):
      s[i, 1 if "happy" in t else 0 if "angry" in t else 2] = 0.8
    return s


def tone(seconds, sr=16000, amp=0.5, channels=1):
  x = (amp * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)
  return np.stack([x] * channels, 1) if channels > 1 else x


def make_bad_folder(root):
  os.makedirs(root)
  w = lambda name, x, sr=16000: soundfile.write(os.path.join(root, name), x, sr)
  w("good_happy.wav", tone(1.0))
  w("good_stereo_44k.wav", tone(1.2, 44100, amp=0.7, channels=2), 44100)
  w("good_8k.flac", tone(0.8, 8000), 8000)
  w("long.wav", tone(3.0))  # cropped to audio.max_seconds=2
  w("silent.wav", np.zeros(16000, np.float32))
  w("short.wav", tone(0.05))
  w("empty_text.wav", tone(1.0, amp=0.3))
  w("no_speech.wav", tone(1.0, amp=0.2))
  open(os.path.join(root, "empty.wav"), "wb").close()
  open(os.path.join(root, "garbage.wav"), "w").write("not audio " * 50)
  header = open(os.path.join(root, "long.wav"), "rb").read()[:30]
  open(os.path.join(root, "truncated.wav"), "wb").write(header)


def small_config(root, shards=3):
  c = defaults.default_config()
  c.num_pieces = shards
  c.manifest.root = root
  c.audio.max_seconds = 2.0
  c.asr.batch_size = 2
  c.features.batch_clips = 2
  return c


def run_all(config, workdir, process=(0, 1)):
  return chain.run_stages(config, workdir, "all", process, labeler=FakeLabeler(),
                        transcriber=FakeTranscriber())


def read_records(feature_dir, split="train"):
  from array_record.python import array_record_module
  out = {}
  for path in records.list_shards(feature_dir, split):
    reader = array_record_module.ArrayRecordReader(path)
    for i in range(reader.num_records()):
      ex = records.decode(reader.read([i])[0])
      out[ex.utt_id] = ex
    reader.close()
  return out


def tree_bytes(workdir):
  """Every file a run wrote, by path relative to the workdir, with its bytes."""
  out = {}
  for folder, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(folder, name)
      out[os.path.relpath(path, workdir)] = open(path, "rb").read()
  return out
