"""One whole-utterance windowing (lanser_jax/input_pipeline/windows.py): the training's evaluation and
`lanser_jax.load(...).predict` give identical logits for the same records.

The model is a tiny ResNet with random parameters and batch statistics (no training needed: the claim is
about the windowing and the forward pass, whatever the weights), saved as a training workdir would be."""

import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import soundfile
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lanser_jax.input_pipeline import pipeline, records, windows
from lanser_jax.audio import decode
from lanser_jax import config_lib, models, train
from lanser_jax.audio import log_mel as log_mel_lib
from lanser_jax.serving import classifier

SR = 16000
LABELS = ["a", "b", "c"]
CROP, HOP, BATCH = 48, 20, 8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """WAVs of 0.3..1.4 s -> their log-mel records (float16, as the features stage writes) -> a workdir
  holding a random tiny model, its config (crop 48, hop 20) and the data description."""
  root = tmp_path_factory.mktemp("windows")
  rng = np.random.default_rng(0)
  options = log_mel_lib.LogMelOptions()
  log_mel = log_mel_lib.LogMel(options)
  wavs, examples = [], []
  for i, seconds in enumerate([0.3, 0.45, 0.9, 1.4, 0.6, 1.1, 0.35]):  # 1 to 7 windows each
    t = np.arange(int(seconds * SR)) / SR
    x = (0.3 * np.sin(2 * np.pi * (200 + 300 * i) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    path = str(root / f"u{i}.wav")
    soundfile.write(path, x, SR, subtype="PCM_16")
    mel = log_mel.one(decode.load(path).samples).astype(np.float16)
    examples.append(records.Example(f"u{i}", mel, i % len(LABELS)))
    wavs.append(path)
  data_dir = str(root / "features")
  records.write_split(data_dir, "validation", examples, 2, options.num_mel_bins)
  records.write_dataset_info(data_dir, LABELS, options.to_json(), ["validation"], "validation")

  workdir = str(root / "run")
  config = config_lib.base_config()
  config.model.name, config.data.crop_frames, config.data.eval_hop_frames = "tiny", CROP, HOP
  model = models.model_from_config(config, len(LABELS))
  # Jitted: one compile (kept in the persistent cache) instead of one per operation, with the same values.
  variables = jax.jit(lambda key: model.init(key, jnp.zeros((1, CROP, options.num_mel_bins)), train=False))(
      jax.random.key(3))
  variables = jax.tree.map(np.asarray, variables)
  keys = jax.random.split(jax.random.key(4), 2)
  shapes = jax.tree.map(np.shape, variables["batch_stats"])
  noise = jax.jit(lambda key: jax.tree.map(lambda s: jax.random.normal(key, s), shapes,
                                           is_leaf=lambda s: isinstance(s, tuple)))(keys[0])
  stats = jax.tree.map(lambda v, n: v + 0.1 * np.asarray(n), variables["batch_stats"],
                       noise)  # not the init values: the statistics are used
  stats = jax.tree.map(np.abs, stats)  # variances stay positive
  variables = {"params": variables["params"], "batch_stats": stats}
  os.makedirs(workdir)
  ocp.PyTreeCheckpointer().save(os.path.join(workdir, "state"), variables)  # a state folder, as a step has
  train.save_run_info(workdir, config, data_dir, os.path.join(data_dir, "stats.json"), LABELS)
  return {"data_dir": data_dir, "workdir": workdir, "wavs": wavs, "examples": examples, "model": model,
          "variables": variables, "config": config}


@flax.struct.dataclass
class State:
  """What the evaluation step reads of a TrainState."""
  params: Any
  batch_stats: Any


def evaluation_logits(run, devices):
  """The training's whole-utterance evaluation path (train.utterance_logits) on `devices`."""
  normalizer = pipeline.Normalizer.from_file(os.path.join(run["data_dir"], "stats.json"))
  eval_set = pipeline.make_eval_set(run["data_dir"], "validation", crop_frames=CROP, hop_frames=HOP,
                                    num_classes=len(LABELS))
  sharding = NamedSharding(Mesh(np.asarray(devices), ("data",)), P("data"))
  state = State(**jax.device_put(run["variables"], NamedSharding(sharding.mesh, P())))
  eval_step = jax.jit(train.make_eval_step(run["model"], normalizer))
  logits = train.utterance_logits(eval_step, state, eval_set, normalizer, BATCH, sharding)
  return eval_set, logits


@pytest.mark.parametrize("num_devices", [1, pytest.param(8, marks=pytest.mark.multidevice)])
def test_evaluation_and_serving_give_identical_logits(run, num_devices):
  devices = jax.devices()[:num_devices]
  eval_set, expected = evaluation_logits(run, devices)
  assert len(eval_set.windows) % BATCH and len(eval_set.windows) > 2 * BATCH  # 3 batches, the last padded
  by_id = {ex.utt_id: ex for ex in run["examples"]}
  clf = classifier.load(run["workdir"], batch_size=BATCH, devices=devices)
  assert (clf.crop_frames, clf.hop_frames) == (CROP, HOP)
  in_order = [by_id[u].log_mel for u in eval_set.utt_ids]  # the same records, in the evaluation's order
  served = np.stack([p.logits for p in clf.predict_log_mel(in_order)])
  np.testing.assert_array_equal(served, expected)
  wav_of = dict(zip([ex.utt_id for ex in run["examples"]], run["wavs"]))
  from_audio = np.stack([p.logits for p in clf.predict([wav_of[u] for u in eval_set.utt_ids])])
  np.testing.assert_array_equal(from_audio, expected)  # the audio front end reproduces the records


def test_one_record_at_a_time_gives_the_evaluation_logits(run):
  """A record served alone sits at other rows of other batches than in the evaluation; its logits are
  still identical on this CPU backend (each window row is computed independently of the others). A backend
  whose convolution algorithm depended on the batch's other rows could differ in the last bits here; the
  test above, the same records in the same batches, would not."""
  devices = jax.devices()[:1]
  eval_set, expected = evaluation_logits(run, devices)
  clf = classifier.load(run["workdir"], batch_size=BATCH, devices=devices)
  by_id = {ex.utt_id: ex for ex in run["examples"]}
  for u, utt_id in enumerate(eval_set.utt_ids):
    np.testing.assert_array_equal(clf.predict_log_mel(by_id[utt_id].log_mel).logits, expected[u],
                                  err_msg=utt_id)


def test_windows_layout_fill_and_average():
  assert windows.window_starts(10, 48, 20) == [0]
  assert windows.window_starts(100, 48, 20) == [0, 20, 40, 52]  # the last ends at the end
  lay = windows.layout([10, 100], 48, 20)
  assert lay == [(0, 0), (1, 0), (1, 20), (1, 40), (1, 52)]
  mels = {0: np.ones((10, 2), np.float16), 1: np.arange(200, dtype=np.float16).reshape(100, 2)}
  utt, start = np.array([1, 1]), np.array([40, 52])
  batch = windows.fill_batch(mels, utt, start, 4, 48, 2)
  assert batch["log_mel"].dtype == np.float16 and batch["log_mel"].shape == (4, 48, 2)
  np.testing.assert_array_equal(batch["log_mel"][1], mels[1][52:100])
  np.testing.assert_array_equal(batch["length"], [48, 48, 0, 0])
  np.testing.assert_array_equal(batch["utt"], [1, 1, -1, -1])
  np.testing.assert_array_equal(batch["weight"], [1, 1, 0, 0])
  short = windows.fill_batch(mels, np.array([0]), np.array([0]), 2, 48, 2)
  assert short["length"][0] == 10 and not short["log_mel"][0, 10:].any()  # zero after the end
  avg = windows.average(np.array([0, 1, 1, -1]), np.array([[1.0], [2.0], [4.0], [99.0]]), 2)
  np.testing.assert_array_equal(avg, [[1.0], [3.0]])
  with pytest.raises(RuntimeError, match=r"no window of utterances \['b'\]"):
    windows.average(np.array([0]), np.array([[1.0]]), 2, ["a", "b"])


def test_serving_rounds_log_mels_to_the_records_dtype(run):
  clf = classifier.load(run["workdir"], batch_size=BATCH)
  mel = run["examples"][2].log_mel.astype(np.float32)
  jitter = mel * np.float32(1 + 2.0**-14)  # under half a float16 step (2^-12 relative): the same record
  assert not np.array_equal(jitter, mel)
  np.testing.assert_array_equal(clf.predict_log_mel(jitter).logits, clf.predict_log_mel(mel).logits)
  with pytest.raises(ValueError, match="beyond the range of float16"):
    clf.predict_log_mel(np.full((60, clf.mel_bins), 1e6, np.float32))
