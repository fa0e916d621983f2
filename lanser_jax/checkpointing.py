"""Orbax checkpoints of a training run, and backbone initialisation from another run.

Layout: `<workdir>/checkpoints/<step>/{state,data_iter}`. `state` holds step, params, batch statistics and
optimiser state; `data_iter` the Grain iterator position of every process. One manager keeps the latest
`keep_checkpoints` steps and, in addition, the best step by the eval metric saved with it. Each step's Orbax
metadata (`_CHECKPOINT_METADATA`, key `custom_metadata`) also records what the data position means: the
dataset, label subset and global batch size (`data`), and how the iterator was built (`iterator`).

A resume (`restore_for_resume`) tries the newest step first; a step that does not restore is moved aside to
`checkpoints/<step>.damaged` (a name Orbax does not read as a step and never cleans up) and the next older one
is tried. A data iterator that cannot take the saved Grain state is rebuilt from the step instead.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import re
import sys
import threading
import time
from typing import Any, Callable

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
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
  root = checkpoint_root(workdir)
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, enable_async_checkpointing=True,
                                         cleanup_tmp_directories=True, **_atomicity(root))
  return ocp.CheckpointManager(root, options=options, item_names=("state", "data_iter"))


def checkpoint_root(workdir: str) -> str:
  """`<workdir>/checkpoints`, absolute; a gs:// or s3:// URL goes to Orbax as it is (TensorStore writes the
  arrays to the bucket itself)."""
  root = fileio.absolute(os.path.join(workdir, CHECKPOINT_DIR))
  check_orbax_can_write(root)
  return root


def check_orbax_can_write(path: str):
  """Makes Orbax able to write and read checkpoints at `path`, before any work is done.

  Local and gs:// paths need nothing. Orbax 0.12 builds no TensorStore spec for s3:// (see
  lanser_jax/orbax_s3.py): an s3:// path installs that adapter, which fails at once, with what to do, when
  the installed Orbax is not the one it fits."""
  if fileio.scheme(path) == "s3":
    from lanser_jax import orbax_s3
    orbax_s3.install()


def _atomicity(root: str) -> dict[str, Any]:
  """Orbax's options for how a step becomes visible. S3 has no rename: on s3:// a step is written in place
  and is finished when its `commit_success.txt` exists (`CommitFileTemporaryPath`, what Orbax itself
  chooses for gs://), instead of being renamed from a temporary name, which on S3 would be a copy of every
  object, and a half-copied step under its final name if killed during it. Local and gs:// paths keep
  Orbax's defaults. Readers must use the same rule, or an unfinished s3:// step would count as a step."""
  if fileio.scheme(root) == "s3":
    return {"temporary_path_class": ocp.path.atomicity.CommitFileTemporaryPath}
  return {}


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be restored (files missing or unreadable), or no usable one at all."""


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_iter: Any,
         metrics: dict[str, float] | None = None, data_spec: dict[str, Any] | None = None,
         iterator_spec: dict[str, Any] | None = None):
  custom = {k: v for k, v in (("data", data_spec), ("iterator", iterator_spec)) if v is not None}
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             data_iter=grain.checkpoint.CheckpointSave(data_iter)),
               metrics=metrics, force=True, custom_metadata=custom or None)


def restore_state(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
  """The train state alone (the data position is then rebuilt from the step)."""
  return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))["state"]


def has_iterator_state_for_this_job(manager: ocp.CheckpointManager, step: int) -> bool:
  """Grain writes one iterator file per process (process_<i>-of-<n>.json): usable only with the same n."""
  name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
  return fileio.exists(os.path.join(str(manager.directory), str(step), "data_iter", name))


# ---------------------------------------------------------------------------------------------------
# Resuming: damaged steps, changed data iterators, changed data.

# What a data position means. The reference values live in each checkpoint's own metadata, not in the
# workdir's config.json: config.json is rewritten by every start (so it would already hold the new values
# when compared), while the metadata travels with the step whose position it describes, also when a
# checkpoint folder is copied to another machine.
DATA_SPEC_NAMES = {"dataset": "dataset", "label_subset": "label subset", "global_batch_size": "global batch size"}


def check_data_spec(saved: dict[str, Any] | None, current: dict[str, Any], where: str):
  """Raises ValueError naming old and new values when the data a step's position indexes has changed.

  Worker count, prefetching and the Grain version do not change which example sits at which index, so
  they are not compared here (the iterator is rebuilt instead); a changed dataset, label subset or
  global batch size would silently train on other data than an unbroken run."""
  if not saved:
    return  # written before specs were recorded: nothing to compare against
  diffs = [f"{DATA_SPEC_NAMES.get(k, k)}: checkpoint {saved[k]!r}, this run {current.get(k)!r}"
           for k in DATA_SPEC_NAMES if k in saved and saved[k] != current.get(k)]
  if diffs and saved.get("data_dir") != current.get("data_dir"):
    diffs.append(f"data.dir: checkpoint {saved.get('data_dir')}, this run {current.get('data_dir')}")
  if diffs:
    raise ValueError(f"{where} was written for other training data, so its data position means nothing "
                     "here; use a new workdir (or restore the old settings) to continue:\n  "
                     + "\n  ".join(diffs))


def _custom_metadata(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  return dict(manager.metadata(step).custom_metadata or {})


def describe_failure(error: BaseException, step_dir: str) -> str:
  """One line saying which file of a step is missing or unreadable, from a TensorStore/Orbax error."""
  text = str(error)
  files = sorted(set(re.findall(r'local file "([^"]+)"', text)), key=len)
  arrays = re.findall(r'Error reading "([^"]+?)/\.z', text)
  parts = []
  for f in files[-1:]:  # the longest path is the most specific (the array chunk, not the database)
    parts.append(f"{'missing' if not fileio.exists(f) else 'unreadable'}: {f}")
  if arrays:
    parts.append(f"array {arrays[0]}")
  if not parts:
    lacking = [n for n in ("state/_METADATA", "state/manifest.ocdbt", "_CHECKPOINT_METADATA")
               if not fileio.exists(fileio.join(step_dir, n))]
    parts += [f"missing: {os.path.join(step_dir, n)}" for n in lacking]
  first = text.strip().splitlines()[0].split(" [tensorstore_spec")[0] if text.strip() else ""
  detail = f"{type(error).__name__}: {first[:240]}"
  return "; ".join(parts + [detail]) if parts else detail


def move_aside(checkpoint_dir: str, step: int) -> str:
  """Renames a step folder to `<step>.damaged[.k]`: Orbax lists only all-digit names as steps and cleans
  only `.orbax-checkpoint-tmp` names, so the files stay for inspection and are never deleted."""
  src = os.path.join(checkpoint_dir, str(step))
  dst, k = f"{src}.damaged", 1
  while fileio.exists(dst):
    dst, k = f"{src}.damaged.{k}", k + 1
  if jax.process_index() == 0:
    if fileio.is_url(src):  # object stores have no folder rename: copy every object, then delete
      fileio.copy_tree(src, dst)
      fileio.rmtree(src)
    else:
      fileio.rename(src, dst)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(f"checkpoint {step} moved aside")
  return dst


class _UnretrievedReadErrors(std_logging.Filter):
  """Drops asyncio's "Task exception was never retrieved" reports about reads of a step already reported
  damaged, and only those.

  Some of a failed restore's TensorStore reads end with an error that nobody awaits any more; asyncio reports
  each one, with the read's whole TensorStore spec, when the task is garbage-collected -- at any later moment,
  often while training has resumed from an older step (seen on CI, 2026-12-02). The error is the one already
  reported in a single line, so records whose exception names a step directory passed to `add` are counted,
  not printed; the filter stays on the `asyncio` logger for the life of the process."""

  def __init__(self):
    super().__init__()
    self.dirs: set[str] = set()
    self.count = 0
    self._installed = False

  def add(self, step_dir: str):
    for d in {str(step_dir), fileio.absolute(str(step_dir))}:
      self.dirs.add(d.rstrip("/") + "/")
    if not self._installed:
      self._installed = True
      std_logging.getLogger("asyncio").addFilter(self)

  def filter(self, record: std_logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    if error is None or not str(record.msg).startswith("Task exception was never retrieved"):
      return True
    text = str(error)
    if any(d in text for d in self.dirs):
      self.count += 1
      return False
    return True


_unretrieved_read_errors = _UnretrievedReadErrors()


class _AbandonedReads:
  """Silences the stragglers of a restore that failed part-way, and only those.

  Orbax runs a restore's TensorStore reads in an event loop of its own and closes it as soon as one read
  fails; the reads still in flight then complete on TensorStore's threads, find the loop closed, and each
  reports `RuntimeError: Event loop is closed` through `sys.unraisablehook` (dozens of tracebacks for one
  missing file). Their results are discarded either way, so while restores are attempted, and after a failed
  one until its stragglers have drained, exactly those reports are counted instead of printed; anything else
  goes to the previous hook."""

  def __init__(self):
    self.count, self.last, self.failed, self._previous = 0, 0.0, False, None
    self._lock = threading.Lock()

  @staticmethod
  def _is_straggler(unraisable) -> bool:
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
      return False
    tb, names = unraisable.exc_traceback, set()
    while tb is not None:
      names.add(tb.tb_frame.f_code.co_name)
      tb = tb.tb_next
    return "call_soon_threadsafe" in names

  def _hook(self, unraisable):
    if self._is_straggler(unraisable):
      with self._lock:
        self.count, self.last = self.count + 1, time.monotonic()
    else:
      self._previous(unraisable)

  def start(self):
    self._previous, sys.unraisablehook = sys.unraisablehook, self._hook

  def restore_failed(self, step_dir: str):
    _unretrieved_read_errors.add(step_dir)
    with self._lock:
      self.failed, self.last = True, time.monotonic()

  def drain(self, quiet_s: float = 0.5, limit_s: float = 5.0):
    """After a failed restore, waits until no straggler has arrived for `quiet_s` (at most `limit_s`);
    then puts the previous hook back."""
    deadline = time.monotonic() + limit_s
    while self.failed and time.monotonic() < deadline and time.monotonic() - self.last < quiet_s:
      time.sleep(0.05)
    sys.unraisablehook, self._previous = self._previous, None
    if self.count:
      logging.info(f"{self.count} TensorStore reads of the failed restore finished after it was abandoned "
                   "(their results discarded)")


@contextlib.contextmanager
def _quiet_abandoned_reads():
  """`_AbandonedReads` around restore attempts, drained on the way out."""
  reads = _AbandonedReads()
  reads.start()
  try:
    yield reads
  finally:
    reads.drain()


def restore_for_resume(make_manager: Callable[[], ocp.CheckpointManager], abstract_state: Any, data_iter: Any,
                       data_spec: dict[str, Any], iterator_spec: dict[str, Any]):
  """(manager, step, state, iterator_restored) from the newest checkpoint that restores.

  Steps that fail are reported, moved aside and the next older one is tried; `CheckpointError` lists
  every step tried when none restores. `iterator_restored` is False when the data iterator must be
  rebuilt from the step: the step was written with other iterator settings (worker count, prefetching,
  Grain version, process count) or its Grain state does not load into this run's iterator. A new
  manager replaces one whose restore failed: the failed TensorStore reads leave it unusable."""
  with _quiet_abandoned_reads() as abandoned:
    return _restore_newest(make_manager, abstract_state, data_iter, data_spec, iterator_spec, abandoned)


def _restore_newest(make_manager, abstract_state, data_iter, data_spec, iterator_spec, abandoned):
  manager = make_manager()
  directory = str(manager.directory)
  tried = []
  for step in sorted(manager.all_steps(), reverse=True):
    step_dir = os.path.join(directory, str(step))
    where = f"checkpoint {step_dir}"
    try:
      custom = _custom_metadata(manager, step)
    except Exception:  # unreadable step metadata: the state restore below says what else is wrong
      custom = {}
    check_data_spec(custom.get("data"), data_spec, where)
    try:
      state = restore_state(manager, step, abstract_state)
    except Exception as e:  # TensorStore/Orbax raise ValueError, OSError, KeyError ... for damaged files
      abandoned.restore_failed(step_dir)
      problem = describe_failure(e, step_dir)
      try:
        manager.close()
      except Exception:
        pass
      moved = move_aside(directory, step)
      logging.warning(f"checkpoint step {step} does not restore ({problem}); moved it to {moved} and "
                      "trying the next older step")
      tried.append(f"step {step}: {problem} (moved to {moved})")
      manager = make_manager()
      continue
    saved_iterator = custom.get("iterator")
    if saved_iterator is not None and saved_iterator != iterator_spec:
      changed = {k: (saved_iterator.get(k), iterator_spec.get(k)) for k in iterator_spec
                 if saved_iterator.get(k) != iterator_spec.get(k)}
      why = "data iterator settings changed (" + ", ".join(
          f"{k} {a} -> {b}" for k, (a, b) in changed.items()) + ")"
    elif not has_iterator_state_for_this_job(manager, step):
      why = f"no iterator state for process {jax.process_index()} of {jax.process_count()}"
    else:
      try:
        manager.restore(step, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(data_iter)))
        logging.info(f"resuming from {step_dir}")
        return manager, step, state, True
      except Exception as e:  # a state format this Grain version or iterator cannot read
        why = f"its Grain iterator state does not load here ({type(e).__name__}: {e})"
    logging.warning(f"resuming from {step_dir}; data position rebuilt from step {step}: {why}")
    return manager, step, state, False
  if tried:
    raise CheckpointError(f"no checkpoint in {directory} restores; tried, newest first:\n  "
                          + "\n  ".join(tried) + "\nthe damaged steps were moved aside, not deleted; "
                          "remove the workdir's checkpoints to start afresh")
  return manager, None, None, False


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
  options = ocp.CheckpointManagerOptions(read_only=True, **_atomicity(root))
  manager = ocp.CheckpointManager(root, options=options, item_names=("state", "data_iter"))
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
  """Params and batch statistics of a saved state as host numpy arrays (no optimiser state read).

  A damaged checkpoint raises CheckpointError naming the step and the missing or unreadable file."""
  check_orbax_can_write(state_path)
  with _quiet_abandoned_reads() as abandoned:
    return _load_variables(state_path, abandoned)


def _load_variables(state_path: str, abandoned: _AbandonedReads) -> dict[str, Any]:
  checkpointer = ocp.PyTreeCheckpointer()
  step_dir = os.path.dirname(fileio.absolute(state_path))

  def damaged(e: Exception) -> CheckpointError:
    abandoned.restore_failed(step_dir)
    return CheckpointError(f"checkpoint step {os.path.basename(step_dir)} ({step_dir}) is damaged: "
                           f"{describe_failure(e, step_dir)}")

  try:
    metadata = checkpointer.metadata(state_path)
    tree = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata.tree
  except Exception:  # the tree's metadata lives in the same database as the arrays: let the read say why
    try:
      tree = checkpointer.restore(state_path)
    except Exception as e:  # TensorStore's NOT_FOUND/DATA_LOSS arrive as ValueError with a long spec dump
      raise damaged(e) from None
  wanted = {k: tree[k] for k in ("params", "batch_stats") if k in tree}
  if "params" not in wanted:
    raise ValueError(f"{state_path}: no 'params' in checkpoint (keys: {sorted(tree)})")
  target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), wanted)
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
  try:
    restored = checkpointer.restore(state_path, args=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=True))
  except Exception as e:
    raise damaged(e) from None
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
