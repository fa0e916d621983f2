"""Where the input pipeline's time goes: per-stage microtimings of the old and the new path, the new map's
split in place, and the worker hand-over's cost and page faults (benchmarks/input_throughput.py prints them).

Imported by input_throughput.py (by file path: benchmarks/ is a folder of scripts, not a package).
All timings are CPU time: on a shared machine the wall clock counts other jobs' turns.
"""

from __future__ import annotations

import mmap
import os
import time

import grain
import numpy as np
import psutil
from grain._src.python.experimental.index_shuffle.python import index_shuffle_module

from lanser_jax.input_pipeline import crop_draws, pipeline, records, shuffle


class CpuClock:
  """CPU seconds of this process and of the child processes started after it was made (Grain workers, not
  the train-step workers that were already running)."""

  def __init__(self):
    self._me = psutil.Process()
    self._before = {c.pid for c in self._me.children(recursive=True)}

  def __call__(self) -> float:
    return sum(self.split())

  def split(self) -> tuple[float, float]:
    """(this process, its new child processes), CPU seconds each."""
    t = self._me.cpu_times()
    children = 0.0
    for c in self._me.children(recursive=True):
      if c.pid in self._before:
        continue
      try:
        ct = c.cpu_times()
        children += ct.user + ct.system
      except psutil.Error:  # a worker that just exited
        pass
    return t.user + t.system, children


def _us_per_example(fn, n: int, repeats: int = 3) -> float:
  """CPU time (not wall time: on a shared machine the wall clock counts other jobs' turns), best of repeats."""
  times = []
  for _ in range(repeats):
    t = time.process_time()
    fn()
    times.append(time.process_time() - t)
  return 1e6 * min(times) / n


class _ConstantBatch(grain.transforms.Map):
  """Hands out one prebuilt batch: the cost of moving it from a worker process is then all there is."""

  def __init__(self, batch):
    self.batch = batch

  def map(self, _):
    return self.batch


def _minor_faults(pid: int) -> int:
  with open(f"/proc/{pid}/stat") as f:
    return int(f.read().rsplit(")", 1)[1].split()[7])


def ipc_us_per_example(batch: dict, batches: int) -> tuple[float, float]:
  """CPU-µs per example (this process + the worker) to bring a batch out of one Grain worker process, and
  the page faults per example the worker takes meanwhile (Grain copies each batch into a new shared-memory
  block: every 4 KiB page of it is a fresh page)."""
  ds = grain.MapDataset.range(batches + 2).map(_ConstantBatch(batch)).to_iter_dataset()
  clock = CpuClock()
  it = iter(ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=1, per_worker_buffer_size=2)))
  try:
    next(it), next(it)
    workers = [c.pid for c in psutil.Process().children(recursive=True) if c.pid not in clock._before]
    cpu, faults = clock(), sum(_minor_faults(w) for w in workers)
    for _ in range(batches):
      next(it)
    spent, faults = clock() - cpu, sum(_minor_faults(w) for w in workers) - faults
  finally:
    it.close()
  n = batches * len(batch["label"])
  return 1e6 * spent / n, faults / n


def page_fault_us(pages: int = 4096, repeats: int = 3) -> float:
  """CPU-µs to take one page fault on a fresh 4 KiB page (map, touch, unmap), best of repeats: what each
  page of a new shared-memory block costs on this machine."""
  best = float("inf")
  for _ in range(repeats):
    t = time.process_time()
    m = mmap.mmap(-1, pages * 4096)
    view = np.frombuffer(m, np.uint8)
    view[::4096] = 1
    del view
    m.close()
    best = min(best, time.process_time() - t)
  return 1e6 * best / pages


def stage_costs(args) -> dict[str, dict[str, float | None]]:
  """Each stage of the old path (on the format-1 copy) and of the new one (on the format-2 folder), per
  example. Records are read and dropped one at a time, as both pipelines read them."""
  sources = {"old": pipeline.open_source(args.format1_dir, "train"),
             "new": pipeline.open_source(args.data_dir, "train")}
  normalizer = pipeline.Normalizer.from_file(os.path.join(args.data_dir, "stats.json"))
  length = len(sources["new"])
  n = min(args.stage_examples, length)
  keys = [int(k) for k in np.random.default_rng(0).choice(length, n, replace=False)]
  t_, bins = args.frames, args.mel_bins
  raw = {k: [src[i] for i in keys] for k, src in sources.items()}
  exs = [records.decode(r) for r in raw["new"]]
  frames = np.asarray([e.log_mel.shape[0] for e in exs])
  key = crop_draws.generator_key(1)
  starts = crop_draws.crop_starts(1, np.arange(n), frames, t_)
  lengths = [min(int(f), t_) for f in frames]
  floats = [e.log_mel.astype(np.float32) for e in exs]
  normed = [normalizer(e.log_mel) for e in exs]

  def read(kind):
    def fn():
      for i in keys:
        sources[kind][i]
    return fn

  def decode(kind):
    def fn():
      for r in raw[kind]:
        records.decode(r)
    return fn

  def old_order():
    for i in range(n):
      index_shuffle_module.index_shuffle(i % length, max_index=length - 1, seed=3, rounds=4)

  def new_order():  # a whole epoch from a fresh ShuffleOrder: its epoch table (or chunks) included
    order = shuffle.ShuffleOrder(length, 3)
    for lo in range(0, length, args.batch):
      order(np.arange(lo, min(lo + args.batch, length)))

  def old_draw():
    gen = np.random.Generator(np.random.Philox(1))
    for i, f in enumerate(frames.tolist()):
      if f > t_:
        crop_draws.reset_generator(gen, i)
        gen.integers(0, f - t_ + 1)

  def new_draw():
    for lo in range(0, n, args.batch):
      u32 = crop_draws.first_uint32s(key, np.arange(lo, min(lo + args.batch, n))).tolist()
      for r, f in enumerate(frames[lo:lo + args.batch].tolist()):
        if f > t_:
          crop_draws.bounded(u32[r], f - t_ + 1)

  def old_crop():
    for x, s, m in zip(normed, starts, lengths):
      out = np.zeros((t_, bins), np.float32)
      out[:m] = x[s:s + m]

  def new_crop():
    out = np.empty((n, t_, bins), np.float16)
    for r, (e, s, m) in enumerate(zip(exs, starts, lengths)):
      out[r, :m] = e.log_mel[s:s + m]
      if m < t_:
        out[r, m:] = 0

  def masks():
    for m in lengths:
      mask = np.zeros((t_,), bool)
      mask[:m] = True

  crops = [np.zeros((t_, bins), np.float32) for _ in range(n)]
  masks_ = [np.zeros((t_,), bool) for _ in range(n)]
  rows = {
      "record read, one at a time (old: format 1, zstd:3 shards; new: format 2, uncompressed)":
          (read("old"), read("new")),
      "decode (old: format 1, msgpack of the whole record; new: format 2, msgpack header + np.frombuffer)":
          (decode("old"), decode("new")),
      "shuffle order (old: Grain's index_shuffle per element; new: shuffle.py per batch)": (old_order, new_order),
      "crop draw (old: Generator reset + integers per element; new: crop_draws.py per batch)":
          (old_draw, new_draw),
      "float16 -> float32 cast (old: whole utterance)": (lambda: [e.log_mel.astype(np.float32) for e in exs],
                                                         None),
      "normalisation (old: whole utterance)": (lambda: [(x - normalizer.mean) / normalizer.std
                                                       for x in floats], None),
      "padding + crop copy (old: float32 per element; new: float16 into the batch)": (old_crop, new_crop),
      "mask (new: lengths only)": (masks, None),
      "batch stacking (new: none, preallocated)": (lambda: (np.stack(crops), np.stack(masks_)), None),
  }
  table = {}
  for name, (old, new) in rows.items():
    table[name] = {"old_us": _us_per_example(old, n) if old else None,
                   "new_us": _us_per_example(new, length if new is new_order else n) if new else None}
  table["(record read, batched: __getitems__, the batch's records alive at once)"] = {
      "old_us": _us_per_example(lambda: sources["old"].__getitems__(keys), n),
      "new_us": _us_per_example(lambda: sources["new"].__getitems__(keys), n)}
  b = min(args.batch, n)
  old_batch = {"log_mel": np.zeros((b, t_, bins), np.float32), "mask": np.zeros((b, t_), bool),
               "label": np.zeros((b,), np.int32)}
  new_batch = {"log_mel": np.zeros((b, t_, bins), np.float16), "length": np.zeros((b,), np.int32),
               "label": np.zeros((b,), np.int32)}
  ipc_batches = max(4, 2048 // b)
  (old_ipc, old_faults), (new_ipc, new_faults) = (ipc_us_per_example(old_batch, ipc_batches),
                                                  ipc_us_per_example(new_batch, ipc_batches))
  table["worker IPC (shared memory, per example)"] = {"old_us": old_ipc, "new_us": new_ipc}
  fault = page_fault_us()
  table["(worker IPC: page faults per example, x the cost of one below)"] = {
      "old_us": old_faults * fault, "new_us": new_faults * fault,
      "old_faults": old_faults, "new_faults": new_faults, "fault_us": fault}
  return table


def in_place_costs(args, batches: int = 6, repeats: int = 3) -> dict[str, float]:
  """The new map's time per example split where it goes inside the map, on batch loops as training runs
  them (records of shuffled shards, a batch array filled between reads): loops that do the map's first k
  steps (the same calls in the same order as pipeline.CropBatch.map, label target), then CropBatch.map
  itself, each over the same batches, process CPU time, best of `repeats` interleaved runs; each step's
  cost is the difference to the loop before (so timers cost nothing per element)."""
  source = pipeline.open_source(args.data_dir, "train")
  order = pipeline.ShuffledBatches(np.arange(len(source)), 5, args.batch)
  crop = pipeline.CropBatch(source, args.frames, args.mel_bins, 6, "label", args.num_classes)
  t_ = args.frames

  def loop(steps: int):
    def run(element):
      positions, keys = element
      draws = crop_draws.first_uint32s(crop.key, positions).tolist()
      log_mel = np.empty((len(keys), t_, args.mel_bins), np.float16)
      for r, key in enumerate(keys.tolist()):
        data = source[key]
        if steps < 2:
          continue
        ex = records.decode(data, where=f"train record {key}")
        if steps < 3:
          continue
        frames, start = ex.log_mel.shape[0], 0
        if frames > t_:
          start = crop_draws.bounded(draws[r], frames - t_ + 1)
          if start is None:
            start = crop_draws.draw(6, int(positions[r]), frames - t_ + 1)
        if steps < 4:
          continue
        n = min(frames, t_)
        log_mel[r, :n] = ex.log_mel[start:start + n]
        if n < t_:
          log_mel[r, n:] = 0
    return run

  steps = {"record read (+ batch setup, crop-draw uint32s)": loop(1), "decode": loop(2), "crop start": loop(3),
           "crop copy + padding": loop(4), "the rest of CropBatch.map (lengths, targets, checks)": crop.map}
  elements = [order[b] for b in range(batches)]
  best = dict.fromkeys(steps, float("inf"))
  for _ in range(repeats):
    for name, fn in steps.items():
      clock = time.process_time()
      for element in elements:
        fn(element)
      best[name] = min(best[name], time.process_time() - clock)
  out, before = {}, 0.0
  for name, seconds in best.items():
    us = 1e6 * seconds / (batches * args.batch)
    out[name], before = us - before, us
  out["CropBatch.map, total"] = before
  return out
