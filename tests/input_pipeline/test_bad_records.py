"""Feature folders with wrong values or damaged files: every failure names the file (and, for shards, the
record), and NaN never reaches training or evaluation silently."""

import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO, tiny_config
from lanser_jax.input_pipeline import pipeline, records, synthetic
from lanser_jax import train


@pytest.fixture
def folder(tmp_path):
  d = str(tmp_path / "features")
  synthetic.write_synthetic(d, num_classes=4, mel_bins=16, num_train=16, num_eval=8, min_frames=20,
                            max_frames=60, num_shards=2, seed=0)
  return d


@pytest.mark.parametrize("name", ["dataset.json", "stats.json", "train-00001-of-00002.stats.json"])
def test_invalid_json_is_named(folder, name):
  path = os.path.join(folder, name)
  with open(path, "a") as f:
    f.write("}{")
  with pytest.raises(records.RecordError) as e:
    records.read_dataset_info(folder) if name != "stats.json" else records.read_stats(path)
  assert str(e.value).startswith(f"{path}: invalid JSON (line ")


@pytest.mark.parametrize("key,value,message", [
    ("mean", float("nan"), "mean holds 1 NaN or infinite values (first at mel bin 3: nan)"),
    ("std", float("inf"), "std holds 1 NaN or infinite values (first at mel bin 3: inf)"),
    ("std", 0.0, "std must be > 0, mel bin 3 has 0.0"),
])
def test_non_finite_or_zero_statistics_are_refused(folder, key, value, message):
  path = os.path.join(folder, "stats.json")
  stats = json.load(open(path))
  stats[key][3] = value
  with open(path, "w") as f:
    json.dump(stats, f)  # Python writes NaN and Infinity, as a careless tool would
  with pytest.raises(records.RecordError) as e:
    pipeline.Normalizer.from_file(path)
  assert str(e.value).startswith(f"{path}: {message}")


def _write_nan_split(folder, split, index):
  """Rewrites `split` with one record's log-mel set to NaN, bypassing encode's check (a record written by
  another tool)."""
  examples = []
  for shard in records.list_shards(folder, split):
    source = pipeline.grain.sources.ArrayRecordDataSource([shard])
    examples += [records.decode(source[i]) for i in range(len(source))]
  bad = examples[index]
  mel = np.array(bad.log_mel)
  mel[2, 1] = np.nan
  examples[index] = records.Example(bad.utt_id, mel, bad.label, bad.scores, bad.speaker_id)
  real = records.encode

  def encode_anything(example):  # encode without its NaN check
    log_mel = np.asarray(example.log_mel)
    return real(records.Example(example.utt_id, np.zeros_like(log_mel), example.label, example.scores,
                                example.speaker_id))[:-log_mel.nbytes] + np.ascontiguousarray(log_mel, "<f2").tobytes()

  for path in records.list_shards(folder, split):
    os.remove(path)
  records.encode = encode_anything
  try:
    records.write_split(folder, split, examples, 1, mel.shape[1])
  finally:
    records.encode = real
  return bad.utt_id


def test_nan_records_are_found_when_the_folder_is_first_read(folder):
  _write_nan_split(folder, "validation", 5)
  with pytest.raises(records.RecordError) as e:
    records.read_dataset_info(folder)
  shard = os.path.join(folder, "validation-00000-of-00001.array_record")
  assert str(e.value).startswith(f"{shard}: its records hold NaN or infinite log-mel values (the shard's sum "
                                 "'total' is nan at mel bin 1")


def test_nan_evaluation_record_is_named_even_when_its_shard_sums_were_finite(folder):
  utt = _write_nan_split(folder, "validation", 5)
  sidecar = os.path.join(folder, "validation-00000-of-00001.stats.json")
  stats = json.load(open(sidecar))
  stats["total"] = [0.0] * len(stats["total"])  # a sidecar that does not show it
  stats["total_sq"] = [0.0] * len(stats["total_sq"])
  json.dump(stats, open(sidecar, "w"))
  with pytest.raises(records.RecordError) as e:
    pipeline.make_eval_set(folder, "validation", crop_frames=32, hop_frames=16, num_classes=4)
  shard = os.path.join(folder, "validation-00000-of-00001.array_record")
  assert str(e.value).startswith(f"{shard}: record 5 ({utt}, record 5 of split 'validation') holds 1 NaN")


def test_training_refuses_nan_validation_records_before_training(folder, tmp_path):
  _write_nan_split(folder, "validation", 0)
  workdir = str(tmp_path / "run")
  with pytest.raises(records.RecordError, match="validation-00000-of-00001.array_record: its records hold NaN"):
    train.train_and_evaluate(tiny_config(folder, **{"specaugment.max_freq_width": 4}), workdir)
  assert not os.path.exists(os.path.join(workdir, "results.json"))


def test_truncated_shard_is_named_when_opened(folder):
  shard = os.path.join(folder, "train-00001-of-00002.array_record")
  data = open(shard, "rb").read()
  open(shard, "wb").write(data[:len(data) // 2])
  with pytest.raises(records.RecordError) as e:
    pipeline.open_source(folder, "train")
  assert str(e.value).startswith(f"{shard}: the ArrayRecord reader cannot open this shard of split 'train'")


def _flip_bytes(path, count=10, seed=0):
  data = bytearray(open(path, "rb").read())
  rng = random.Random(seed)
  for k in rng.sample(range(64, len(data) - 64), count):
    data[k] ^= 0xFF
  open(path, "wb").write(bytes(data))


def test_bit_flipped_shard_is_named_with_the_record(folder):
  shard = os.path.join(folder, "train-00001-of-00002.array_record")
  _flip_bytes(shard)
  source = pipeline.open_source(folder, "train")
  first = len(pipeline.grain.sources.ArrayRecordDataSource([records.list_shards(folder, "train")[0]]))
  messages = []
  for key in range(len(source)):
    try:
      pipeline.read_example(source, key, folder, "train")
    except records.RecordError as e:
      messages.append(str(e))
  assert messages, "ten flipped bytes went unnoticed"
  assert all(m.startswith(f"{shard}: record ") for m in messages)
  index = int(messages[0].split(": record ")[1].split()[0])
  assert f"(record {first + index} of split 'train') cannot be read" in messages[0]


@pytest.mark.subprocess
def test_damaged_shard_with_grain_workers_ends_with_the_cause(folder, tmp_path):
  """With worker processes the last line of the output is the shard and record, not a Grain shutdown error
  (Grain 0.2.18's `AttributeError: 'NoneType' object has no attribute 'is_alive'` when two closes of a worker's
  iterator met at exit: pipeline.ClosedOnError closes it once, in order, when the error comes)."""
  shard = os.path.join(folder, "train-00000-of-00002.array_record")
  _flip_bytes(shard, count=200)
  shutil.copy(os.path.join(folder, "stats.json"), tmp_path / "stats.json")
  script = tmp_path / "read.py"
  script.write_text(
      "from absl import app\n"
      "from lanser_jax.input_pipeline import pipeline\n"
      "def main(_):\n"
      f"  n = pipeline.Normalizer.from_file({str(tmp_path / 'stats.json')!r})\n"
      f"  it = iter(pipeline.train_dataset({folder!r}, 'train', global_batch_size=8, crop_frames=32,\n"
      "       normalizer=n, num_classes=4, seed=0, num_workers=2))\n"
      "  for _ in range(4):\n"
      "    next(it)\n"
      "if __name__ == '__main__':\n"
      "  app.run(main)\n")
  env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
  assert out.returncode != 0
  lines = [line for line in out.stderr.splitlines() if line.strip()]
  cause = [line for line in lines if "RecordError" in line]
  assert cause and cause[-1].startswith(f"lanser_jax.input_pipeline.records.RecordError: {shard}: record "), \
      out.stderr[-3000:]
  # The cause is the last error printed (Grain's own note about its filtered traceback may follow it).
  assert not any("Error" in line for line in lines[lines.index(cause[-1]) + 1:]), out.stderr[-3000:]
