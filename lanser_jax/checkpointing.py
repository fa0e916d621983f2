"""Orbax checkpoints of a training run, and backbone initialisation from another run.

Layout: `<workdir>/checkpoints/<step>/{state,data_iter}`. `state` holds step, params, batch statistics and
optimiser state; `data_iter` the Grain iterator position of every process. One manager keeps the latest
`keep_checkpoints` steps and, in addition, the best step by the eval metric saved with it.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from lanser_jax import fileio

CHECKPOINT_DIR = "checkpoints"
_cpu_handler_registered = False


def create_manager(workdir: str, keep: int, best_metric: str) -> ocp.CheckpointManager:
  global _cpu_handler_registered
  if jax.default_backend() == "cpu" and not _cpu_handler_registered:
    _cpu_handler_registered = True
    # Replica-parallel saving slices each replicated array per device (a compile per shape and device);
    # CPU devices share one host memory, so writing from one replica is as fast and starts at once.
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)
  policy = policies.AnyPreservationPolicy([
      policies.LatestN(n=keep),
      policies.BestN(get_metric_fn=lambda m: m[best_metric], reverse=False, n=1,
                     keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, enable_async_checkpointing=True,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(checkpoint_root(workdir), options=options, item_names=("state", "data_iter"))


def checkpoint_root(workdir: str) -> str:
  """`<workdir>/checkpoints`, absolute; a gs:// URL goes to Orbax as it is (TensorStore writes the arrays
  to the bucket itself)."""
  root = fileio.absolute(os.path.join(workdir, CHECKPOINT_DIR))
  check_orbax_can_write(root)
  return root


def check_orbax_can_write(path: str):
  """Orbax 0.12 builds TensorStore specs for local paths and gs:// only: for s3:// it stops at the first
  array with "Checkpoint path should be absolute". Say so before any work is done."""
  if fileio.scheme(path) == "s3":
    raise ValueError(
        f"{path}: Orbax {getattr(ocp, '__version__', '')} cannot write or read checkpoints at s3:// URLs "
        "(its TensorStore spec builder knows local paths and gs:// only). Mount the bucket (mountpoint-s3 or "
        "s3fs-fuse) and pass the mounted folder as the workdir, or use a gs:// or local workdir.")


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_iter: Any,
         metrics: dict[str, float] | None = None):
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             data_iter=grain.checkpoint.CheckpointSave(data_iter)),
               metrics=metrics, force=True)


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any, data_iter: Any) -> Any:
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state),
      data_iter=grain.checkpoint.CheckpointRestore(data_iter)))
  return restored["state"]


def restore_state(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
  """The train state alone (the data position is then rebuilt from the step)."""
  return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))["state"]


def has_iterator_state_for_this_job(manager: ocp.CheckpointManager, step: int) -> bool:
  """Grain writes one iterator file per process (process_<i>-of-<n>.json): usable only with the same n."""
  name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
  return fileio.exists(os.path.join(str(manager.directory), str(step), "data_iter", name))


def best_metric_value(manager: ocp.CheckpointManager, metric: str) -> float:
  step = manager.best_step()
  if step is None:
    return -np.inf
  metrics = manager.metrics(step) or {}
  return float(metrics.get(metric, -np.inf))


# ---------------------------------------------------------------------------------------------------
# Initialising from another run (fine-tuning, linear probe, inference).


def resolve_state_path(path: str, which: str | int = "best") -> str:
  """A workdir, a `checkpoints/` folder or a step folder -> the step's `state` item folder."""
  path = fileio.absolute(path.rstrip("/"))
  check_orbax_can_write(path)
  if os.path.basename(path) == "state" and fileio.isdir(path):
    return path
  if fileio.isdir(os.path.join(path, "state")):  # a step folder
    return os.path.join(path, "state")
  root = os.path.join(path, CHECKPOINT_DIR) if fileio.isdir(os.path.join(path, CHECKPOINT_DIR)) else path
  if not fileio.isdir(root):
    raise FileNotFoundError(f"{path}: not a workdir, checkpoint folder or checkpoint step")
  manager = ocp.CheckpointManager(root, options=ocp.CheckpointManagerOptions(read_only=True),
                                  item_names=("state", "data_iter"))
  steps = manager.all_steps()
  if not steps:
    raise FileNotFoundError(f"{root}: holds no finished checkpoint")
  if which == "latest":
    step = manager.latest_step()
  elif which == "best":
    step = manager.best_step() if manager.best_step() is not None else manager.latest_step()
  else:
    step = int(which)
    if step not in steps:
      raise FileNotFoundError(f"{root}: no checkpoint at step {step}; steps are {sorted(steps)}")
  manager.close()
  return os.path.join(root, str(step), "state")


def _flat_shapes(tree: Any) -> dict[str, tuple]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p, simple=True, separator="/"): tuple(getattr(v, "shape", ()))
          for p, v in flat}


def check_fits(checkpoint: Any, model: Any, where: str, ignore_prefixes: tuple[str, ...] = ()):
  """Raises ValueError naming every path whose presence or shape differs."""
  want, have = _flat_shapes(model), _flat_shapes(checkpoint)
  keep = lambda k: not any(k.startswith(p) for p in ignore_prefixes)
  missing = [k for k in want if keep(k) and k not in have]
  unexpected = [k for k in have if keep(k) and k not in want]
  shapes = [f"{k}: checkpoint {have[k]} vs model {want[k]}"
            for k in want if keep(k) and k in have and have[k] != want[k]]
  if missing or unexpected or shapes:
    lines = [f"checkpoint {where} does not fit the model: {len(missing)} arrays missing, "
             f"{len(unexpected)} unexpected, {len(shapes)} of other shape:"]
    lines += [f"  missing in checkpoint: {k}" for k in missing[:20]]
    lines += [f"  not in model: {k}" for k in unexpected[:20]]
    lines += [f"  shape differs: {s}" for s in shapes[:20]]
    total = len(missing) + len(unexpected) + len(shapes)
    if total > len(lines) - 1:
      lines.append(f"  ... {total} differences in all")
    raise ValueError("\n".join(lines))


def load_variables(state_path: str) -> dict[str, Any]:
  """Params and batch statistics of a saved state as host numpy arrays (no optimiser state read)."""
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(state_path)
  tree = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata.tree
  wanted = {k: tree[k] for k in ("params", "batch_stats") if k in tree}
  if "params" not in wanted:
    raise ValueError(f"{state_path}: no 'params' in checkpoint (keys: {sorted(tree)})")
  target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), wanted)
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
  restored = checkpointer.restore(state_path, args=ocp.args.PyTreeRestore(
      item=target, restore_args=restore_args, partial_restore=True))
  return {k: restored[k] for k in wanted}


def init_backbone_from(path: str, which: str | int, params: Any, batch_stats: Any,
                       head: str = "head") -> tuple[Any, Any]:
  """Replaces every non-head parameter and statistic with those of a checkpoint; the head stays new."""
  state_path = resolve_state_path(path, which)
  loaded = load_variables(state_path)
  check_fits(loaded["params"], params, state_path, ignore_prefixes=(head,))
  check_fits(loaded.get("batch_stats", {}), batch_stats, state_path)
  new_params = dict(params)
  new_params.update({k: v for k, v in loaded["params"].items() if k != head})
  return new_params, loaded.get("batch_stats", batch_stats)
