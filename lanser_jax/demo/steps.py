"""The demo's named steps, each run once: a step whose record exists is reused, so a rerun continues where it
stopped. (Steps, not stages: the offline stages are lanser_jax/stages/.)"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from absl import logging

from lanser_jax.input_pipeline import records
from lanser_jax.utils import fileio


class Steps:
  """Runs named steps once: a step whose record exists is skipped and its record returned."""

  def __init__(self, workdir: str):
    # The folder keeps its first name, so that a demo workdir made before the rename still resumes.
    self.dir = os.path.join(workdir, "stages")
    fileio.makedirs(self.dir)

  def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    path = os.path.join(self.dir, f"{name}.json")
    if fileio.exists(path):
      record = fileio.read_json(path)
      logging.info("[%s] done in an earlier run (%.0f s): reusing it", name, record["wall_s"])
      return record
    logging.info("[%s] starting", name)
    t0 = time.time()
    record = dict(fn() or {})
    record["wall_s"] = time.time() - t0
    records.write_json(path, record)
    logging.info("[%s] done in %.0f s", name, record["wall_s"])
    return record

  def records(self) -> dict[str, dict[str, Any]]:
    out = {}
    for name in fileio.listdir(self.dir):
      if name.endswith(".json"):
        out[name[:-5]] = fileio.read_json(os.path.join(self.dir, name))
    return out
