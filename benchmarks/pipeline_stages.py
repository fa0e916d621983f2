"""Where the input pipeline's time goes: per-stage microtimings of the training map and its sampler, the map's
split in place, and the worker hand-over's cost and page faults (benchmarks/input_throughput.py prints them).

Imported by input_throughput.py and train_step.py (by file path: benchmarks/ is a folder of scripts, not a
package), also in a process whose `lanser_jax` is an older checkout (input_throughput.py's baseline rows,
which use only `CpuClock`): the current pipeline's modules are imported where they are timed.
All timings are CPU time: on a shared machine the wall clock counts other jobs' turns.
"""

from __future__ import annotations

import mmap
import time

import grain
import numpy as np
import psutil


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


def stage_costs(args) -> dict[str, dict[str, float]]:
  """Each stage of the training map and its sampler, per example (`us`). Records are read and dropped one at a
  time, as the pipeline reads them; rows in parentheses are alternatives not taken, or costs inside another."""
  from lanser_jax.input_pipeline import pipeline, records, sampler
  source = pipeline.open_source(args.data_dir, "train")
  length = len(source)
  n = min(args.stage_examples, length)
  keys = [int(k) for k in np.random.default_rng(0).choice(length, n, replace=False)]
  t_, bins = args.frames, args.mel_bins
  raw = [source[i] for i in keys]
  exs = [records.decode(r) for r in raw]
  frames = np.asarray([e.log_mel.shape[0] for e in exs])
  lengths = [min(int(f), t_) for f in frames]
  order = sampler.Sampler(length, 3, args.batch)
  words = np.concatenate([order.crop_words(b) for b in range(-(-n // args.batch))])[:n].tolist()
  starts = [sampler.crop_start(w, f - t_ + 1) if f > t_ else 0 for w, f in zip(words, frames.tolist())]

  def read():
    for i in keys:
      source[i]

  def decode():
    for r in raw:
      records.decode(r)

  def epoch_order():  # a whole epoch from a fresh sampler: its argsort included
    fresh = sampler.Sampler(length, 3, args.batch)
    for b in range(-(-length // args.batch)):
      fresh.positions(b)

  def crop_draws():
    for lo in range(0, n, args.batch):
      words = order.crop_words(lo // args.batch).tolist()
      for r, f in enumerate(frames[lo:lo + args.batch].tolist()):
        if f > t_:
          sampler.crop_start(words[r], f - t_ + 1)

  def crop():
    out = np.empty((n, t_, bins), np.float16)
    for r, (e, s, m) in enumerate(zip(exs, starts, lengths)):
      out[r, :m] = e.log_mel[s:s + m]
      if m < t_:
        out[r, m:] = 0

  table = {
      "record read, one at a time (format 2, uncompressed shards)": {"us": _us_per_example(read, n)},
      "decode (msgpack header + np.frombuffer)": {"us": _us_per_example(decode, n)},
      "epoch order (sampler: Philox words + stable argsort, positions per batch)":
          {"us": _us_per_example(epoch_order, length)},
      "crop draw (sampler: Philox words per batch, multiply-shift per row)": {"us": _us_per_example(crop_draws, n)},
      "crop copy + padding (float16, into the batch)": {"us": _us_per_example(crop, n)},
      "(record read, batched: __getitems__, the batch's records alive at once)":
          {"us": _us_per_example(lambda: source.__getitems__(keys), n)},
  }
  b = min(args.batch, n)
  batch = {"log_mel": np.zeros((b, t_, bins), np.float16), "length": np.zeros((b,), np.int32),
           "label": np.zeros((b,), np.int32)}
  ipc, faults = ipc_us_per_example(batch, max(4, 2048 // b))
  table["worker IPC (shared memory, per example)"] = {"us": ipc}
  fault = page_fault_us()
  table["(worker IPC: page faults per example, x the cost of one below)"] = {
      "us": faults * fault, "faults": faults, "fault_us": fault}
  return table


def in_place_costs(args, batches: int = 6, repeats: int = 3) -> dict[str, float]:
  """The training map's time per example split where it goes inside the map, on batch loops as training runs
  them (records of shuffled shards, a batch array filled between reads): loops that do the map's first k
  steps (the same calls in the same order as pipeline.CropBatch.map, label target), then CropBatch.map
  itself, each over the same batches, process CPU time, best of `repeats` interleaved runs; each step's
  cost is the difference to the loop before (so timers cost nothing per element)."""
  from lanser_jax.input_pipeline import pipeline, records, sampler
  source = pipeline.open_source(args.data_dir, "train")
  order = pipeline.SampledBatches(np.arange(len(source)), 5, args.batch)
  crop = pipeline.CropBatch(source, args.frames, args.mel_bins, "label", args.num_classes)
  t_ = args.frames

  def loop(steps: int):
    def run(element):
      keys, words = element
      words = words.tolist()
      log_mel = np.empty((len(keys), t_, args.mel_bins), np.float16)
      for r, key in enumerate(keys.tolist()):
        data = source[key]
        if steps < 2:
          continue
        ex = records.decode(data, where=f"train record {key}")
        if steps < 3:
          continue
        frames = ex.log_mel.shape[0]
        start = sampler.crop_start(words[r], frames - t_ + 1) if frames > t_ else 0
        if steps < 4:
          continue
        n = min(frames, t_)
        log_mel[r, :n] = ex.log_mel[start:start + n]
        if n < t_:
          log_mel[r, n:] = 0
    return run

  steps = {"record read (+ batch setup)": loop(1), "decode": loop(2), "crop start": loop(3),
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
