import os

import numpy as np
import pytest

from lanser_jax.input_pipeline import pipeline, records, subsets


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
  # Format 1 (msgpack of the whole dict) still reads, to the same example.
  old = records.decode(records.encode_v1(ex))
  assert (old.utt_id, old.label, old.speaker_id) == ("u1", 2, "spk")
  np.testing.assert_array_equal(old.log_mel, back.log_mel)
  np.testing.assert_array_equal(old.scores, back.scores)
  assert records.decode(records.encode(records.Example("u3", ex.log_mel))).scores is None


def test_compressed_format_1_shards_read_as_the_new_uncompressed_ones(tmp_path):
  """A folder as this project wrote it before format 2 (format-1 records, ArrayRecord's default zstd
  compression, sidecars without format keys) gives the same records and training batches as the same
  examples written today (format 2, uncompressed); dataset.json says which is which."""
  from array_record.python import array_record_module
  rng = np.random.default_rng(0)
  exs = [records.Example(f"u{i}", rng.normal(size=(int(rng.integers(5, 40)), 4)).astype(np.float16), i % 2,
                         speaker_id="s") for i in range(12)]
  new_dir, old_dir = str(tmp_path / "new"), str(tmp_path / "old")
  records.write_split(new_dir, "train", exs, 2, 4)
  os.makedirs(old_dir)
  for shard in range(2):
    path = os.path.join(old_dir, records.shard_name("train", shard, 2))
    writer = array_record_module.ArrayRecordWriter(path, records.LEGACY_WRITER_OPTIONS)
    stats = records.RunningStats(4)
    for ex in exs[shard::2]:
      writer.write(records.encode_v1(ex))
      stats.add(ex)
    writer.close()
    records.write_json(path.removesuffix(".array_record") + ".stats.json", stats.to_json())
  infos = {d: records.write_dataset_info(d, ["a", "b"], {}, ["train"]) for d in (new_dir, old_dir)}
  assert infos[new_dir]["version"] == 2
  assert infos[new_dir]["splits"]["train"]["record_versions"] == [2]
  assert infos[new_dir]["splits"]["train"]["writer_options"] == [records.WRITER_OPTIONS]
  assert infos[old_dir]["splits"]["train"]["record_versions"] == [1]
  assert infos[old_dir]["splits"]["train"]["writer_options"] == [records.LEGACY_WRITER_OPTIONS]
  written = {d: array_record_module.ArrayRecordReader(records.list_shards(d, "train")[0],
                                                      "readahead_buffer_size:0").writer_options_string()
             for d in (new_dir, old_dir)}
  assert "uncompressed" in written[new_dir] and "zstd" in written[old_dir]
  new_src, old_src = pipeline.open_source(new_dir, "train"), pipeline.open_source(old_dir, "train")
  for i in range(len(exs)):
    a, b = records.decode(new_src[i]), records.decode(old_src[i])
    assert (a.utt_id, a.label, a.speaker_id) == (b.utt_id, b.label, b.speaker_id)
    np.testing.assert_array_equal(a.log_mel, b.log_mel)
  kwargs = dict(global_batch_size=4, crop_frames=16, normalizer=_normalizer(new_dir), num_classes=2, seed=0)
  new_it, old_it = (iter(pipeline.train_dataset(d, "train", **kwargs)) for d in (new_dir, old_dir))
  for _ in range(4):
    a, b = next(new_it), next(old_it)
    for key in b:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


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
# The batched pipeline against the per-element one it replaced (lanser_jax/input_pipeline/reference.py).


@pytest.mark.parametrize("options", [{}, {"target": "scores", "start_batch": 5},
                                     {"process_index": 1, "process_count": 2}, {"subset": list(range(0, 96, 3))}])
def test_batched_pipeline_gives_the_reference_batches(synth_dir, options):
  """Same seed, same batches, bit for bit (host finish): crops, padding, mask, labels, scores, order."""
  from lanser_jax.input_pipeline import reference
  kwargs = dict(global_batch_size=8, crop_frames=64, normalizer=_normalizer(synth_dir), num_classes=4, seed=5,
                **options)
  new = iter(pipeline.train_dataset(synth_dir, "train", **kwargs))
  old = iter(reference.train_dataset(synth_dir, "train", **kwargs))
  for _ in range(14):  # past an epoch boundary
    a, b = next(new), next(old)
    assert sorted(a) == sorted(b)
    for key in b:
      assert a[key].dtype == b[key].dtype, key
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_an_iterator_state_of_the_reference_pipeline_resumes_the_batched_one(synth_dir):
  """A checkpoint's data position saved by the earlier pipeline (the same Grain iterator state) resumes the
  batched pipeline at the same batch."""
  from lanser_jax.input_pipeline import reference
  kwargs = dict(global_batch_size=8, crop_frames=64, normalizer=_normalizer(synth_dir), num_classes=4, seed=9)
  old = iter(reference.train_dataset(synth_dir, "train", **kwargs))
  for _ in range(13):
    next(old)
  new = iter(pipeline.train_dataset(synth_dir, "train", **kwargs))
  new.set_state(old.get_state())
  for _ in range(2):
    a, b = next(new), next(old)
    for key in b:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.multidevice
def test_device_half_equals_the_host_normalisation_within_one_float32_rounding(synth_dir):
  """float16 crops + lengths, finished inside a jitted function over 8 devices under the batch's
  NamedSharding, equal the reference's float32 batch: mask and padding exactly, values to within a relative
  2**-22 (XLA may divide by the per-bin std as a multiply by its reciprocal: one more float32 rounding)."""
  import jax
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from lanser_jax.input_pipeline import reference
  normalizer = _normalizer(synth_dir)
  sharding = NamedSharding(Mesh(np.asarray(jax.devices()), ("data",)), P("data"))
  finish = jax.jit(normalizer.device, in_shardings=(sharding,), out_shardings=sharding)
  kwargs = dict(global_batch_size=8, crop_frames=64, normalizer=normalizer, num_classes=4, seed=2)
  new = iter(pipeline.train_dataset(synth_dir, "train", on_device=True, **kwargs))
  old = iter(reference.train_dataset(synth_dir, "train", **kwargs))
  for _ in range(6):
    a, b = next(new), next(old)
    assert a["log_mel"].dtype == np.float16 and a["log_mel"].nbytes * 2 == b["log_mel"].nbytes
    assert a["length"].dtype == np.int32 and "mask" not in a
    assert np.all(a["log_mel"][~b["mask"]] == 0)  # the float16 padding itself (the batch starts uninitialised)
    x, mask = finish({"log_mel": a["log_mel"], "length": a["length"]})
    assert x.sharding == sharding and x.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(mask), b["mask"])
    x = np.asarray(x)
    assert np.all(x[~b["mask"]] == 0)
    np.testing.assert_allclose(x, b["log_mel"], rtol=2.0**-22, atol=0)
    np.testing.assert_array_equal(a["label"], b["label"])


def test_eval_batches_equal_the_reference_loop_with_and_without_workers(synth_dir):
  from lanser_jax.input_pipeline import reference
  normalizer = _normalizer(synth_dir)
  eval_set = pipeline.make_eval_set(synth_dir, "validation", crop_frames=48, hop_frames=16, num_classes=4)
  n = eval_set.num_batches(8) + 1  # one padding batch, as another host may need
  expected = list(reference.eval_batches(eval_set, 8, normalizer, n))
  plain = list(pipeline.eval_batches(eval_set, 8, normalizer, n))
  workers = list(pipeline.eval_batches(eval_set, 8, normalizer, n, on_device=True, num_workers=2))
  assert len(plain) == len(workers) == len(expected) == n
  for a, w, b in zip(plain, workers, expected):
    for key in b:
      assert a[key].dtype == b[key].dtype
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_array_equal(normalizer.host(w)["log_mel"], b["log_mel"])
    np.testing.assert_array_equal(w["utt"], b["utt"])


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


@pytest.mark.parametrize("length", [1, 97, 2048, 65537, 2**20 + 3, 2**33 + 5])
def test_vectorised_shuffle_equals_grains_index_shuffle(length):
  """shuffle.py's NumPy cipher gives Grain's C++ `index_shuffle` bit for bit (sizes with 16-bit and wider
  blocks, an exact power of two as max_index, more than 32 bits), whole epochs and element by element."""
  from grain._src.python.experimental.index_shuffle.python import index_shuffle_module
  from lanser_jax.input_pipeline import shuffle
  rng = np.random.default_rng(length)
  n = 8 if length < 1000 else 40  # a small dataset costs the C++ ~65536 / length cipher passes per call
  idx = rng.choice(length, min(length, n), replace=False) if length < 2**31 else rng.integers(0, length, n)
  for seed in (0, 12345, 2**32 - 1):
    want = [index_shuffle_module.index_shuffle(int(i), max_index=length - 1, seed=seed, rounds=4) for i in idx]
    np.testing.assert_array_equal(shuffle.index_shuffle(idx, length - 1, seed), want)
  # Across epochs (seed + epoch), through whole-epoch tables (up to 2**20) or chunks of elements (beyond),
  # as ShuffleMapDataset orders them; epoch 3 starts inside the elements asked for.
  order = shuffle.ShuffleOrder(length, seed=7)
  elements = np.concatenate([np.arange(4), 3 * length + np.arange(-3, 3), rng.integers(0, 4 * length, 4)])
  elements = elements[elements >= 0]
  want = [index_shuffle_module.index_shuffle(int(g % length), max_index=length - 1, seed=7 + int(g // length),
                                             rounds=4) for g in elements]
  np.testing.assert_array_equal(order(elements), want)


def test_batched_crop_draws_equal_numpys_generator():
  """crop_draws.py's Philox and Lemire arithmetic gives the starts NumPy's generator draws for each element
  (reset as Grain's random_map resets it), for element indices up to 2**63 - 1, records shorter than the
  crop (no draw), and spans near 2**31 where Lemire rejects about one draw in four (NumPy redraws)."""
  from grain._src.python.dataset.transformations.map import _reset_rng_state  # random_map's own reset
  from lanser_jax.input_pipeline import crop_draws
  rng = np.random.default_rng(1)
  cases = [(np.concatenate([np.arange(40), rng.integers(0, 2**40, 60), [2**63 - 1]]), None),
           (np.arange(64), 2**31 + 300)]
  for seed in (1, 2**31 + 7):
    for elements, frames in cases:
      frames = rng.integers(10, 4000, len(elements)) if frames is None else np.full(len(elements), frames)
      want, gen = [], np.random.Generator(np.random.Philox(seed))
      for g, f in zip(elements.tolist(), frames.tolist()):
        _reset_rng_state(gen, op_seed=0, index=g)
        want.append(int(gen.integers(0, f - 300 + 1)) if f > 300 else 0)
      np.testing.assert_array_equal(crop_draws.crop_starts(seed, elements, frames, 300), want)
  u32 = crop_draws.first_uint32s(crop_draws.generator_key(5), np.arange(64))
  span = 2**31 + 1
  assert any(crop_draws.bounded(int(u), span) is None for u in u32)  # the rejection path was taken
