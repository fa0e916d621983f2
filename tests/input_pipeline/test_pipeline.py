"""The training and evaluation pipelines and the record format: batches against what they must hold, worker
processes, resume, process slices, label subsets, and format-1 folders refused."""

import json
import os
import re

import msgpack
import numpy as np
import pytest

from lanser_jax.input_pipeline import pipeline, records, sampler, subsets


def _normalizer(d):
  return pipeline.Normalizer.from_file(os.path.join(d, "stats.json"))


def test_record_roundtrip_and_validation():
  ex = records.Example("u1", np.ones((5, 3), np.float16), 2, np.array([0.1, 0.2, 0.7]), "spk")
  back = records.decode(records.encode(ex))
  assert back.utt_id == "u1" and back.label == 2 and back.speaker_id == "spk"
  np.testing.assert_array_equal(back.log_mel, ex.log_mel)
  np.testing.assert_allclose(back.scores, ex.scores)
  with pytest.raises(records.RecordError, match="u2.*NaN"):
    records.encode(records.Example("u2", np.full((3, 3), np.nan, np.float16)))
  with pytest.raises(records.RecordError, match="shard-7"):
    records.decode(b"\x00garbage", where="shard-7")
  data = records.encode(ex)
  assert data[:4] == b"LJR2" and back.log_mel.dtype == np.float16 and not back.log_mel.flags.writeable
  with pytest.raises(records.RecordError, match="shard-8.*bytes, the header says"):
    records.decode(data[:-2], where="shard-8")
  assert records.decode(records.encode(records.Example("u3", ex.log_mel))).scores is None
  with pytest.raises(records.RecordError, match="shard-9: a format-1 record, which this lanser-jax no longer "
                     "reads; write the folder again with the offline features stage"):
    records.decode(_format1_record(ex), where="shard-9")


def _format1_record(ex: records.Example) -> bytes:
  """A record as early versions wrote it: msgpack of the whole dict (a map), log-mels included."""
  return msgpack.packb({"v": 1, "utt_id": ex.utt_id, "speaker_id": ex.speaker_id, "label": ex.label,
                        "log_mel": np.asarray(ex.log_mel, np.float16).tobytes(), "scores": None})


def _format1_folder(folder: str, exs: list, shards: int, format2_shards: tuple[int, ...] = ()):
  """A feature folder as early versions wrote it: format-1 records in ArrayRecord's default zstd shards, stats
  sidecars without format keys, dataset.json version 1; the shards in `format2_shards` as written today
  (dataset.json then says version 2 with record formats [1, 2], as a merge over both kinds wrote it)."""
  from array_record.python import array_record_module
  os.makedirs(folder)
  for shard in range(shards):
    mine = exs[shard::shards]
    if shard in format2_shards:
      with records.ShardWriter(folder, "train", shard, shards, 4) as w:
        for ex in mine:
          w.write(ex)
      continue
    path = os.path.join(folder, records.shard_name("train", shard, shards))
    writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
    stats = records.RunningStats(4)
    for ex in mine:
      writer.write(_format1_record(ex))
      stats.add(ex)
    writer.close()
    records.write_json(path.removesuffix(".array_record") + ".stats.json", stats.to_json())
  versions = sorted({2 if s in format2_shards else 1 for s in range(shards)})
  records.write_json(os.path.join(folder, "dataset.json"), {
      "version": 2 if format2_shards else 1, "label_names": ["a", "b"], "feature": {},
      "splits": {"train": {"num_shards": shards, "num_examples": len(exs),
                           **({"record_versions": versions} if format2_shards else {})}}})


@pytest.mark.parametrize("format2_shards", [(), (0,)])
def test_a_folder_of_format_1_shards_is_refused_naming_the_shard(tmp_path, format2_shards):
  """Whole format-1 folders and folders mixing both formats fail when opened, in one line that names a
  format-1 shard and what to do; a record read anyway fails at decode the same way."""
  rng = np.random.default_rng(0)
  exs = [records.Example(f"u{i}", rng.normal(size=(12, 4)).astype(np.float16), i % 2) for i in range(6)]
  folder = str(tmp_path / "old")
  _format1_folder(folder, exs, 2, format2_shards)
  first_old = min(set(range(2)) - set(format2_shards))
  shard = os.path.join(folder, records.shard_name("train", first_old, 2))
  message = (f"^{re.escape(shard)}: a shard of format-1 records, which this lanser-jax does not read \\(it reads "
             "format 2\\); write the folder again with the offline features stage \\(--stage=features\\), in a new "
             "workdir or after removing its shards$")
  normalizer = pipeline.Normalizer(np.zeros(4, np.float32), np.ones(4, np.float32))
  for read in (lambda: records.read_dataset_info(folder), lambda: pipeline.open_source(folder, "train"),
               lambda: pipeline.train_dataset(folder, "train", global_batch_size=2, crop_frames=4,
                                              normalizer=normalizer, num_classes=2, seed=0),
               lambda: pipeline.make_eval_set(folder, "train", crop_frames=4, hop_frames=2, num_classes=2),
               lambda: records.write_dataset_info(folder, ["a", "b"], {}, ["train"])):
    with pytest.raises(records.RecordError, match=message):
      read()
  os.remove(os.path.join(folder, "dataset.json"))  # no dataset.json to say so: the record itself does
  source = pipeline.open_source(folder, "train")
  with pytest.raises(records.RecordError, match="a format-1 record, which this lanser-jax no longer reads"):
    records.decode(source[len(source) - 1])


def test_dataset_info_records_the_format_and_writer_options(tmp_path):
  from array_record.python import array_record_module
  exs = [records.Example(f"u{i}", np.ones((5, 4), np.float16), i % 2) for i in range(4)]
  records.write_split(str(tmp_path), "train", exs, 2, 4)
  info = records.write_dataset_info(str(tmp_path), ["a", "b"], {}, ["train"])
  assert info["version"] == 2 and info["splits"]["train"]["record_versions"] == [2]
  assert info["splits"]["train"]["writer_options"] == [records.WRITER_OPTIONS]
  reader = array_record_module.ArrayRecordReader(records.list_shards(str(tmp_path), "train")[0],
                                                 "readahead_buffer_size:0")
  assert "uncompressed" in reader.writer_options_string()
  reader.close()
  with open(tmp_path / "dataset.json") as f:
    newer = {**json.load(f), "version": 3}
  records.write_json(str(tmp_path / "dataset.json"), newer)
  with pytest.raises(records.RecordError, match="format version 3, this lanser-jax reads 2 \\(written by a newer "
                     "version: update lanser-jax\\)"):
    records.read_dataset_info(str(tmp_path))


def test_missing_shard_is_named(tmp_path):
  exs = [records.Example(f"u{i}", np.ones((4, 2), np.float16), 0) for i in range(4)]
  paths = records.write_split(str(tmp_path), "train", exs, 3, 2)
  os.remove(paths[1])
  with pytest.raises(records.RecordError, match=r"missing shards \[1\]"):
    records.list_shards(str(tmp_path), "train")


def test_merged_stats_equal_direct_statistics(synth_dir):
  source = pipeline.open_source(synth_dir, "train")
  frames = np.concatenate([records.decode(source[i]).log_mel.astype(np.float64)
                           for i in range(len(source))])
  mean, std = records.read_stats(os.path.join(synth_dir, "stats.json"))
  np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(std, frames.std(0), rtol=1e-4)


def test_train_batches_crop_pad_and_mask(synth_dir):
  ds = pipeline.train_dataset(synth_dir, "train", global_batch_size=8, crop_frames=64,
                              normalizer=_normalizer(synth_dir), num_classes=4, seed=0)
  batch = next(iter(ds))
  assert batch["log_mel"].shape == (8, 64, 32) and batch["log_mel"].dtype == np.float32
  assert batch["mask"].shape == (8, 64)
  short = ~batch["mask"].all(axis=1)
  for row in np.flatnonzero(short):  # padded frames are exactly zero (the mean after normalisation)
    assert np.all(batch["log_mel"][row][~batch["mask"][row]] == 0)
  assert set(batch["label"]) <= {0, 1, 2, 3}


def test_processes_read_disjoint_rows_of_the_same_global_batches(synth_dir):
  kwargs = dict(global_batch_size=8, crop_frames=16, normalizer=_normalizer(synth_dir), num_classes=4, seed=0)
  whole = iter(pipeline.train_dataset(synth_dir, "train", **kwargs))
  parts = [iter(pipeline.train_dataset(synth_dir, "train", process_index=p, process_count=2, **kwargs))
           for p in range(2)]
  for _ in range(15):  # past the end of the first epoch (96 records = 12 batches)
    expected = next(whole)
    got = [next(it) for it in parts]
    for key in ("log_mel", "mask", "label"):
      np.testing.assert_array_equal(np.concatenate([g[key] for g in got]), expected[key])


def test_iterator_state_resumes_same_batches(synth_dir):
  make = lambda: iter(pipeline.train_dataset(
      synth_dir, "train", global_batch_size=8, crop_frames=32, normalizer=_normalizer(synth_dir),
      num_classes=4, seed=3))
  it = make()
  for _ in range(5):
    next(it)
  state = it.get_state()
  expected = [next(it)["log_mel"] for _ in range(3)]
  it2 = make()
  it2.set_state(state)
  for e in expected:
    np.testing.assert_array_equal(next(it2)["log_mel"], e)


def test_worker_processes_deliver_the_same_batches(synth_dir):
  kwargs = dict(global_batch_size=8, crop_frames=32, normalizer=_normalizer(synth_dir), num_classes=4,
                seed=1)
  plain = iter(pipeline.train_dataset(synth_dir, "train", **kwargs))
  workers = iter(pipeline.train_dataset(synth_dir, "train", num_workers=2, **kwargs))
  for _ in range(3):
    np.testing.assert_array_equal(next(plain)["log_mel"], next(workers)["log_mel"])


def test_soft_target_requires_scores(tmp_path):
  exs = [records.Example(f"u{i}", np.ones((10, 2), np.float16), 0) for i in range(4)]
  records.write_split(str(tmp_path), "train", exs, 1, 2)
  records.write_dataset_info(str(tmp_path), ["a", "b"], {}, ["train"])
  ds = pipeline.train_dataset(str(tmp_path), "train", global_batch_size=2, crop_frames=4,
                              normalizer=_normalizer(str(tmp_path)), num_classes=2, seed=0,
                              target="scores")
  with pytest.raises(Exception, match="soft-label training needs scores"):
    next(iter(ds))


def test_eval_sees_every_utterance_once_and_whole(synth_dir):
  eval_set = pipeline.make_eval_set(synth_dir, "validation", crop_frames=64, hop_frames=32, num_classes=4)
  source = pipeline.open_source(synth_dir, "validation")
  lengths = [records.decode(source[i]).log_mel.shape[0] for i in range(len(source))]
  assert len(eval_set.utt_ids) == len(source) == 21
  batches = list(pipeline.eval_batches(eval_set, 8, _normalizer(synth_dir)))
  assert len(batches) == eval_set.num_batches(8)
  utt = np.concatenate([b["utt"] for b in batches])
  weight = np.concatenate([b["weight"] for b in batches])
  assert np.all((utt >= 0) == (weight > 0))
  assert sorted(set(utt[utt >= 0])) == list(range(21))  # every utterance, the last partial batch included
  # Whole: the windows of an utterance cover all its frames.
  for u, length in enumerate(lengths):
    starts = [s for (uu, s) in eval_set.windows if uu == u]
    frames = set()
    for s in starts:
      frames |= set(range(s, min(s + 64, length)))
    assert frames == set(range(length))
  # Averaging: per-window logits equal to the utterance index give back that index.
  logits = np.stack([utt, utt], 1).astype(np.float32)
  avg = pipeline.average_window_logits(eval_set, utt, logits)
  np.testing.assert_array_equal(avg[:, 0], np.arange(21))


def test_padding_batches_for_other_hosts(synth_dir):
  eval_set = pipeline.make_eval_set(synth_dir, "validation", crop_frames=64, hop_frames=32, num_classes=4)
  n = eval_set.num_batches(8)
  batches = list(pipeline.eval_batches(eval_set, 8, _normalizer(synth_dir), num_batches=n + 2))
  assert len(batches) == n + 2 and batches[-1]["weight"].sum() == 0


def test_nested_stratified_subsets():
  labels = np.array([0] * 50 + [1] * 30 + [2] * 5)
  small = subsets.nested_stratified_subset(labels, 0.1, seed=7)
  big = subsets.nested_stratified_subset(labels, 0.3, seed=7)
  assert set(small) <= set(big)
  assert [np.sum(labels[small] == c) for c in range(3)] == [5, 3, 1]
  assert [np.sum(labels[big] == c) for c in range(3)] == [15, 9, 2]
  other = subsets.nested_stratified_subset(labels, 0.1, seed=8)
  assert set(other) != set(small)
  with pytest.raises(ValueError):
    subsets.nested_stratified_subset(labels, 0.0, seed=0)


# ---------------------------------------------------------------------------------------------------
# Batches against what they must hold, computed here from the records and the sampler.


def _expected_train_batch(data_dir, batch, *, global_batch_size, crop_frames, seed, num_classes, target="label",
                          subset=None, process_index=0, process_count=1):
  """This process's rows of global batch `batch`, from the records the sampler picks and the crop starts its
  words give: float16 crops zero-padded, lengths, labels (and scores)."""
  source = pipeline.open_source(data_dir, "train")
  indices = np.arange(len(source)) if subset is None else np.asarray(subset)
  s = sampler.Sampler(len(indices), seed, global_batch_size, process_index, process_count)
  positions, words = s(batch)
  rows = []
  for key, word in zip(indices[positions].tolist(), words.tolist()):
    ex = records.decode(source[key])
    frames = ex.log_mel.shape[0]
    start = sampler.crop_start(word, frames - crop_frames + 1) if frames > crop_frames else 0
    crop = np.zeros((crop_frames, ex.log_mel.shape[1]), np.float16)
    n = min(frames, crop_frames)
    crop[:n] = ex.log_mel[start:start + n]
    rows.append((crop, n, ex))
  out = {"log_mel": np.stack([r[0] for r in rows]), "length": np.asarray([r[1] for r in rows], np.int32)}
  if target == "scores":
    out["scores"] = np.stack([r[2].scores for r in rows]).astype(np.float32)
    out["label"] = out["scores"].argmax(1).astype(np.int32)
  else:
    out["label"] = np.asarray([r[2].label for r in rows], np.int32)
  return out


@pytest.mark.parametrize("options", [{}, {"target": "scores", "start_batch": 5},
                                     {"process_index": 1, "process_count": 2}, {"subset": list(range(0, 96, 3))}])
def test_train_batches_hold_the_sampled_records_crops(synth_dir, options):
  """Every row is its sampled record's crop at the start its word gives, bit for bit, with its length and
  targets, across an epoch boundary; the host finish (on_device=False) is `Normalizer.host` of that batch."""
  start = options.get("start_batch", 0)
  kwargs = dict(global_batch_size=8, crop_frames=64, normalizer=_normalizer(synth_dir), num_classes=4, seed=5,
                **options)
  device = iter(pipeline.train_dataset(synth_dir, "train", on_device=True, **kwargs))
  host = iter(pipeline.train_dataset(synth_dir, "train", **kwargs))
  expect_kwargs = {k: v for k, v in kwargs.items() if k not in ("normalizer", "start_batch")}
  for b in range(start, start + 14):  # past an epoch boundary (96 or 32 records, 8 or 4 rows a batch)
    a, h = next(device), next(host)
    want = _expected_train_batch(synth_dir, b, **expect_kwargs)
    assert sorted(a) == sorted(want)
    for key in want:
      assert a[key].dtype == want[key].dtype, key
      np.testing.assert_array_equal(a[key], want[key], err_msg=f"batch {b} {key}")
    finished = kwargs["normalizer"].host(a)
    assert sorted(h) == sorted(finished)
    for key in finished:
      np.testing.assert_array_equal(h[key], finished[key], err_msg=key)


def test_start_batch_equals_iterating_that_far(synth_dir):
  kwargs = dict(global_batch_size=8, crop_frames=32, normalizer=_normalizer(synth_dir), num_classes=4, seed=4,
                on_device=True)
  it = iter(pipeline.train_dataset(synth_dir, "train", **kwargs))
  for _ in range(13):
    next(it)
  later = iter(pipeline.train_dataset(synth_dir, "train", start_batch=13, **kwargs))
  for _ in range(3):
    a, b = next(it), next(later)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.multidevice
def test_device_half_equals_the_host_finish_within_one_float32_rounding(synth_dir):
  """float16 crops + lengths, finished inside a jitted function over 8 devices under the batch's
  NamedSharding, equal `Normalizer.host`: mask and padding exactly, values to within a relative 2**-22 (XLA
  may divide by the per-bin std as a multiply by its reciprocal: one more float32 rounding)."""
  import jax
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  normalizer = _normalizer(synth_dir)
  sharding = NamedSharding(Mesh(np.asarray(jax.devices()), ("data",)), P("data"))
  finish = jax.jit(normalizer.device, in_shardings=(sharding,), out_shardings=sharding)
  kwargs = dict(global_batch_size=8, crop_frames=64, normalizer=normalizer, num_classes=4, seed=2)
  it = iter(pipeline.train_dataset(synth_dir, "train", on_device=True, **kwargs))
  for _ in range(6):
    a = next(it)
    b = normalizer.host(a)
    assert a["log_mel"].dtype == np.float16 and a["log_mel"].nbytes * 2 == b["log_mel"].nbytes
    assert a["length"].dtype == np.int32 and "mask" not in a
    assert np.all(a["log_mel"][~b["mask"]] == 0)  # the float16 padding itself (the batch starts uninitialised)
    x, mask = finish({"log_mel": a["log_mel"], "length": a["length"]})
    assert x.sharding == sharding and x.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(mask), b["mask"])
    x = np.asarray(x)
    assert np.all(x[~b["mask"]] == 0)
    np.testing.assert_allclose(x, b["log_mel"], rtol=2.0**-22, atol=0)


def test_eval_batches_hold_each_window_with_and_without_workers(synth_dir):
  """Every window row is its utterance's frames from its start, zero-padded, normalised by the stats; padding
  rows (utt -1) are all zero with weight 0; worker processes deliver the same batches."""
  normalizer = _normalizer(synth_dir)
  eval_set = pipeline.make_eval_set(synth_dir, "validation", crop_frames=48, hop_frames=16, num_classes=4)
  source = pipeline.open_source(synth_dir, "validation")
  mels = [records.decode(source[int(i)]).log_mel.astype(np.float32) for i in eval_set.indices]
  n = eval_set.num_batches(8) + 1  # one padding batch, as another host may need
  plain = list(pipeline.eval_batches(eval_set, 8, normalizer, n))
  workers = list(pipeline.eval_batches(eval_set, 8, normalizer, n, on_device=True, num_workers=2))
  assert len(plain) == len(workers) == n
  windows = iter(eval_set.windows)
  for a, w in zip(plain, workers):
    assert a["log_mel"].dtype == np.float32 and a["log_mel"].shape == (8, 48, 32)
    for r in range(8):
      if a["utt"][r] < 0:
        assert a["weight"][r] == 0 and not a["mask"][r].any() and not a["log_mel"][r].any()
        continue
      u, start = next(windows)
      assert a["utt"][r] == u and a["weight"][r] == 1
      m = mels[u][start:start + 48]
      want = np.zeros((48, 32), np.float32)
      want[:len(m)] = (m - normalizer.mean) / normalizer.std
      np.testing.assert_array_equal(a["mask"][r], np.arange(48) < len(m))
      np.testing.assert_array_equal(a["log_mel"][r], want)
    np.testing.assert_array_equal(normalizer.host(w)["log_mel"], a["log_mel"])
    np.testing.assert_array_equal(w["utt"], a["utt"])
  assert next(windows, None) is None  # every window, once


def test_a_record_of_other_mel_bins_is_named(tmp_path):
  exs = [records.Example(f"u{i}", np.ones((10, 2), np.float16), 0) for i in range(4)]
  records.write_split(str(tmp_path), "train", exs, 1, 2)
  records.write_dataset_info(str(tmp_path), ["a", "b"], {}, ["train"])
  wrong = pipeline.Normalizer(np.zeros(3, np.float32), np.ones(3, np.float32))
  ds = pipeline.train_dataset(str(tmp_path), "train", global_batch_size=2, crop_frames=4, normalizer=wrong,
                              num_classes=2, seed=0)
  with pytest.raises(records.RecordError, match=r"train record \d \(u\d\): features have 2 mel bins but the "
                     r"stats file has 3"):
    next(iter(ds))
