"""Metric writers (CLU) and the training progress line (built on progress.py).

Process 0 writes TensorBoard events and `metrics.jsonl` in the workdir; every process logs. The JSON-lines
file is what scripts and the report read: one object per write, `{"step": ..., "name": value, ...}`.

A bucket workdir (gs://, s3://): metrics.jsonl is uploaded whole at every write (fileio.AppendFile).
TensorFlow's summary writer would write gs:// itself through tf.io.gfile, but that client has no s3:// and
its GCS endpoint is compiled in, so nothing could test it; the events are written to a local temporary
folder instead and copied into the workdir through fileio (at most once a minute, and at flush/close).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging

from lanser_jax.utils import fileio
from lanser_jax.utils import progress as progress_lib


class JsonlWriter:
  """Appends scalars (and hparams) to a JSON-lines file; flushed at every write so a killed run keeps them.
  It has the methods of clu's MetricWriter, so clu's MultiWriter drives it beside the TensorBoard writer."""

  def __init__(self, path: str):
    self._path = path
    self._file = fileio.AppendFile(path)

  def _write(self, obj: dict[str, Any]):
    self._file.write(json.dumps(obj) + "\n")
    self._file.flush()

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    self._write({"step": int(step), **{k: float(np.asarray(v)) for k, v in scalars.items()}})

  def write_hparams(self, hparams: Mapping[str, Any]):
    self._write({"hparams": {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
                             for k, v in hparams.items()}})

  def write_texts(self, step, texts):
    self._write({"step": int(step), "texts": dict(texts)})

  # Arrays (images, audio, histograms) go to TensorBoard only.
  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()


def create_writer(workdir: str):
  """CLU writers: TensorBoard + metrics.jsonl on process 0, logging only elsewhere."""
  # clu.metric_writers imports TensorFlow (seconds, hundreds of MB): only processes that train pay for it.
  from clu import metric_writers
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(just_logging=True)
  if fileio.is_url(workdir):
    tensorboard = UploadingWriter(metric_writers, workdir)
  else:
    tensorboard = metric_writers.create_default_writer(workdir, asynchronous=True)
  return metric_writers.MultiWriter([tensorboard, JsonlWriter(os.path.join(workdir, "metrics.jsonl"))])


class UploadingWriter:
  """TensorBoard events for a bucket workdir: written locally by TensorFlow, copied to the same names in
  the workdir by fileio (each copy replaces the object whole, so TensorBoard never reads a torn file)."""

  def __init__(self, metric_writers, workdir: str, every_s: float = 60.0):
    self._local = fileio.local_staging_dir("lanser_tensorboard_")
    self._workdir, self._every_s, self._last = workdir, every_s, time.time()
    self._inner = metric_writers.create_default_writer(self._local, asynchronous=False)
    logging.info("TensorBoard events are written to %s and copied to %s", self._local, workdir)

  def upload(self):
    for path in fileio.walk_files(self._local):
      fileio.copy(path, os.path.join(self._workdir, os.path.relpath(path, self._local)))
    self._last = time.time()

  def __getattr__(self, name):  # write_scalars, write_hparams, ...: TensorFlow's writer, then maybe a copy
    method = getattr(self._inner, name)
    def call(*args, **kwargs):
      out = method(*args, **kwargs)
      if name.startswith("write_") and time.time() - self._last > self._every_s:
        self._inner.flush()
        self.upload()
      return out
    return call

  def flush(self):
    self._inner.flush()
    self.upload()

  def close(self):
    self._inner.close()
    self.upload()
    fileio.rmtree(self._local)


def read_jsonl(path: str) -> list[dict[str, Any]]:
  return fileio.read_jsonl(path)


class Progress(progress_lib.Progress):
  """The training line: step, loss, examples/s and ETA, from the one progress reporter (progress.py), counting
  steps. The rate is timed from the end of the first step (`start`), so compilation is left out; a report
  before any step was timed counts from the start, compilation included, so that every line carries a
  number."""

  def __init__(self, total_steps: int, batch_size: int, first_step: int):
    super().__init__("train", total_steps, done=first_step)
    self.batch_size, self._first = batch_size, first_step
    self._created = time.monotonic()

  def start(self, step: int):
    """The first step's results exist (the caller waited for them): the clock starts here."""
    self.done = step
    super().start()

  def exclude(self, seconds: float):
    """Leaves time spent outside training steps (evaluation, checkpoints) out of the rate."""
    super().exclude(seconds)
    if not self.started:
      self._created += seconds

  def examples_per_sec(self, step: int, now: float) -> float:
    self.done = step
    if self.started and step > self._done0:
      return self.rate(now) * self.batch_size
    return max(step - self._first, 1) * self.batch_size / max(now - self._created, 1e-9)

  def __call__(self, step: int, scalars: Mapping[str, float]) -> dict[str, float]:
    rate = self.examples_per_sec(step, time.monotonic())
    eta = self.eta(rate / self.batch_size)
    logging.info("step %d/%d  loss %.4f  %.1f examples/s  ETA %s", step, self.total,
                 scalars.get("train/loss", float("nan")), rate,
                 progress_lib.hms(eta) if eta is not None else "0:00:00")
    return {"train/examples_per_sec": rate}
