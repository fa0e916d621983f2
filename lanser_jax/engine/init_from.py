"""Which model the run named by `init_from` was trained with, checked before any work.

A run that initialises its backbone from another run needs the same architecture. The source run's config.json
(found at or above the init_from path: workdir / checkpoints / <step> / state) names its model; when a key that
shapes the weights differs, the run stops in one line (CheckpointMismatchError, which lanser-train prints without
a traceback) saying which keys differ, why when `:runlocal` swapped in its tiny model, and the flags that keep the
source's model. A checkpoint found without its config.json is left to the comparison of the arrays
(checkpointing.init_backbone_from).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from lanser_jax.engine import checkpointing
from lanser_jax.utils import fileio

SHAPE_KEYS = ("name", "width", "patch_size", "patch_stride")  # config.model keys that shape the weights


def source_model(path: str) -> dict[str, Any] | None:
  """config.json["model"] of the run at or above `path`, None when there is none."""
  here = fileio.absolute(path.rstrip("/"))
  for _ in range(4):
    config_path = os.path.join(here, "config.json")
    if fileio.exists(config_path):
      return dict(fileio.read_json(config_path).get("model", {}))
    here = os.path.dirname(here)
  return None


def check_model(path: str, model: Mapping[str, Any]) -> None:
  """Raises CheckpointMismatchError (one line) when the run at `path` was trained with another model."""
  source = source_model(path)
  if source is None:
    return
  differ = {k: (source[k], model[k]) for k in SHAPE_KEYS if k in source and k in model and source[k] != model[k]}
  if not differ:
    return
  why = " (':runlocal' sets model.name='tiny')" if model.get("name") == "tiny" else ""
  raise checkpointing.CheckpointMismatchError(
      f"init_from={path} was trained with model " + ", ".join(f"{k}={v[0]!r}" for k, v in differ.items())
      + "; this config builds " + ", ".join(f"{k}={v[1]!r}" for k, v in differ.items()) + f"{why}: keep the "
      "source's model with " + " ".join(f"--config.model.{k}={v[0]}" for k, v in differ.items())
      + ", or init from a run of this model")
