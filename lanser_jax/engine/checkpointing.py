"""Orbax checkpoints of a training run: save, the best step, resume, and backbone initialisation from another run.

Layout: `<workdir>/checkpoints/<step>/{state,data_iter,metrics}`. `state` holds step, params, batch statistics
and optimiser state; `data_iter` the Grain iterator position of every process; `metrics` (steps that were
evaluated) the validation metrics Orbax ranks steps by. One manager keeps the latest `keep_checkpoints` steps
and, in addition, the best step by `config.best_metric` on the validation split (ties: the earlier step).
Each step's Orbax metadata (`_CHECKPOINT_METADATA`, key `custom_metadata`) also records what the data
position means (`data`, `iterator`), the resolved config, every validation evaluation so far, and one
checksum per array (`checksums`), so a resumed run knows its history and a restore can tell a damaged step.

Resume (`restore_for_resume`) takes the newest step that passes three checks, in this order, before Orbax
reads it into the devices: (1) it was written for the same training data, else the run is refused; (2) its
arrays have the names, shapes and dtypes of this run's state, else the run is refused with the arrays and
config values that differ, and nothing is moved; (3) every array reads, matches its checksum and holds only
finite values (training never saves a NaN state, so a NaN read back is altered data). A step that fails (3)
for a reason that names missing, truncated, undecodable or altered data is *damaged*: it is moved
aside to `<step>.damaged` (never deleted) and the next older step is tried. A read that fails for any other
reason (storage unavailable, access denied) or fails only once is retried, and if it keeps failing the run
stops with nothing moved. Checking the arrays with reads of our own (`verify_arrays`) means a damaged step
never reaches Orbax's restore, whose abandoned reads would otherwise report errors long after the restore.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from typing import Any, Callable, Iterable

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from absl import logging
from orbax.checkpoint import checkpoint_managers as policies
from orbax.checkpoint._src.serialization import tensorstore_utils as ts_utils

from lanser_jax.utils import faults, fileio
from lanser_jax.engine import distributed
from lanser_jax.engine import metrics as metrics_lib
from lanser_jax.engine import value_checks

CHECKPOINT_DIR = "checkpoints"
STEP_METADATA_FILE = "_CHECKPOINT_METADATA"  # Orbax's per-step metadata file (JSON)
# Waits before the second and third attempt of a read that failed (seconds).
RETRY_WAITS_S = (1.0, 3.0)
_cpu_handler_registered = False


# ---------------------------------------------------------------------------------------------------
# The manager and the best step.


def best_key(metric: str) -> Callable[[dict[str, Any]], tuple[float, int]]:
  """Orbax's ranking of evaluated steps: the higher `metric`, then the earlier step (Orbax keeps the last of
  its ascending sort, so `-step` makes the earliest of equal values win)."""
  return lambda m: (float(m[metric]), -int(m["step"]))


def create_manager(workdir: str, keep: int, best_metric: str) -> ocp.CheckpointManager:
  global _cpu_handler_registered
  check_best_metric(best_metric)
  if jax.default_backend() == "cpu" and not _cpu_handler_registered:
    _cpu_handler_registered = True
    # Replica-parallel saving slices each replicated array per device (a compile per shape and device);
    # CPU devices share one host memory, so writing from one replica is as fast and starts at once.
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)
  rank = best_key(best_metric)
  policy = policies.AnyPreservationPolicy([
      policies.LatestN(n=keep),
      policies.BestN(get_metric_fn=rank, reverse=False, n=1, keep_checkpoints_without_metrics=False),
  ])
  root = checkpoint_root(workdir)
  # best_fn makes Orbax store the metrics passed to save() and rank steps by them (best_step()); the
  # preservation policy decides what is deleted: the latest `keep`, and the best.
  # Several processes: the background save's barriers let a process whose write failed go on with its
  # error instead of waiting for peers that wait for it (engine/distributed.py, save_barrier).
  async_options = (ocp.AsyncOptions(barrier_sync_fn=distributed.save_barrier()) if jax.process_count() > 1
                   else None)
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=rank, best_mode="max",
                                         enable_async_checkpointing=True, cleanup_tmp_directories=True,
                                         async_options=async_options, **_atomicity(root))
  return ocp.CheckpointManager(root, options=options, item_names=("state", "data_iter"))


def check_best_metric(name: str):
  if name not in metrics_lib.SCALARS:
    raise ValueError(f"config.best_metric={name!r}: evaluation produces {', '.join(metrics_lib.SCALARS)}")


def checkpoint_root(workdir: str) -> str:
  """`<workdir>/checkpoints`, absolute; a gs:// or s3:// URL goes to Orbax as it is (TensorStore writes the
  arrays to the bucket itself)."""
  root = fileio.absolute(os.path.join(workdir, CHECKPOINT_DIR))
  check_orbax_can_write(root)
  return root


def check_orbax_can_write(path: str):
  """Makes Orbax able to write and read checkpoints at `path`, before any work is done.

  Local and gs:// paths need nothing. Orbax 0.12 builds no TensorStore spec for s3:// (see
  lanser_jax/engine/orbax_s3.py): an s3:// path installs that adapter, which fails at once, with what to do, when
  the installed Orbax is not the one it fits."""
  if fileio.scheme(path) == "s3":
    from lanser_jax.engine import orbax_s3
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
  """A checkpoint that cannot be restored (damaged, or unreadable now), or no usable one at all."""


class CheckpointMismatchError(ValueError):
  """A healthy checkpoint that does not fit this run's state (another model or optimiser)."""


# ---------------------------------------------------------------------------------------------------
# Array names and checksums.


def array_name(path: tuple) -> str:
  """Orbax's name of a state leaf: its tree path joined with dots (`opt_state.0.mu.head.kernel`)."""
  parts = []
  for k in path:
    if isinstance(k, jax.tree_util.DictKey):
      parts.append(str(k.key))
    elif isinstance(k, jax.tree_util.GetAttrKey):
      parts.append(k.name)
    elif isinstance(k, jax.tree_util.SequenceKey):
      parts.append(str(k.idx))
    elif isinstance(k, jax.tree_util.FlattenedIndexKey):
      parts.append(str(k.key))
    else:
      parts.append(str(k))
  return ".".join(parts)


_WORD = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def _has_checksum(dtype) -> bool:
  """Arrays of 1-, 2- and 4-byte elements (every dtype of a train state unless jax_enable_x64)."""
  dtype = np.dtype(dtype)
  return dtype.itemsize in _WORD and dtype.kind in "biuf" or dtype.name == "bfloat16"


def _device_checksum(x: jax.Array) -> jax.Array:
  """sum_i word_i * (2 i + 1) mod 2^32 over the row-major elements: one flipped bit always changes it (the
  change is 2^k times an odd number). Computed where the array lies, also when it is sharded."""
  if x.dtype == jnp.bool_:
    words = x.astype(jnp.uint32)
  else:
    words = jax.lax.bitcast_convert_type(x, _WORD[x.dtype.itemsize]).astype(jnp.uint32)
  index, stride = jnp.zeros(x.shape, jnp.uint32), 1
  for axis in reversed(range(x.ndim)):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, x.shape, axis) * jnp.uint32(stride % (1 << 32))
    stride *= x.shape[axis]
  return jnp.sum(words * (index * jnp.uint32(2) + jnp.uint32(1)), dtype=jnp.uint32)


@jax.jit
def _device_checksums(leaves: dict[str, jax.Array]) -> dict[str, jax.Array]:
  return {k: _device_checksum(v) for k, v in leaves.items()}


def host_checksum(x: np.ndarray, block: int = 1 << 22) -> int:
  """`_device_checksum` of a host array, in blocks (bounded memory)."""
  x = np.ascontiguousarray(x)
  words = (x.astype(np.uint8) if x.dtype == np.bool_ else x.view(_WORD[x.dtype.itemsize])).reshape(-1)
  total = 0
  for start in range(0, words.size, block):
    w = words[start:start + block].astype(np.uint64)
    weights = np.arange(start, start + w.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    total = (total + int(np.sum(w * weights, dtype=np.uint64))) & 0xFFFFFFFF  # wraps mod 2^64: fine mod 2^32
  return total


def state_checksums(state: Any) -> dict[str, int]:
  """One checksum per array of a state, keyed by its Orbax name."""
  leaves = {array_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(state)[0]
            if hasattr(v, "dtype") and _has_checksum(v.dtype)}
  return {k: int(v) for k, v in jax.device_get(_device_checksums(leaves)).items()}


# ---------------------------------------------------------------------------------------------------
# Saving.


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_iter: Any,
         metrics: dict[str, float] | None = None, custom: dict[str, Any] | None = None):
  """Saves a step (asynchronously). `metrics` (the validation scalars, on evaluated steps) rank the step
  for `best_step`; `custom` (JSON) goes into the step's metadata beside the array checksums."""
  custom = {**(custom or {}), "checksums": state_checksums(state)}
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             data_iter=grain.checkpoint.CheckpointSave(data_iter)),
               metrics={**metrics, "step": step} if metrics else None, force=True, custom_metadata=custom)


def restore_state(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
  """The train state alone (the data position is then rebuilt from the step)."""
  return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))["state"]


def has_iterator_state_for_this_job(manager: ocp.CheckpointManager, step: int) -> bool:
  """Grain writes one iterator file per process (process_<i>-of-<n>.json): usable only with the same n."""
  name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
  return fileio.exists(os.path.join(str(manager.directory), str(step), "data_iter", name))


def step_metadata(step_dir: str) -> dict[str, Any]:
  """The `custom_metadata` of a step folder (empty when the step recorded none)."""
  path = os.path.join(step_dir, STEP_METADATA_FILE)
  return dict(fileio.read_json(path).get("custom_metadata") or {})


# ---------------------------------------------------------------------------------------------------
# Checking a step before it is restored.


class _ReadFailure(Exception):
  def __init__(self, damaged: bool, detail: str):
    super().__init__(detail)
    self.damaged, self.detail = damaged, detail


# TensorStore/absl status codes that say the stored bytes are missing, cut short, undecodable or malformed.
# Any other failure (UNAVAILABLE, DEADLINE_EXCEEDED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, ...) says
# nothing about the files, so it never gets a step moved aside.
_DAMAGE_CODES = ("NOT_FOUND", "OUT_OF_RANGE", "DATA_LOSS", "FAILED_PRECONDITION", "INVALID_ARGUMENT")


def _is_damage(error: BaseException) -> bool:
  if isinstance(error, (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, KeyError)):
    return True
  code = re.match(r"\s*([A-Z_]+):", str(error))
  return bool(code and code.group(1) in _DAMAGE_CODES)


def describe_failure(error: BaseException, step_dir: str, array: str | None = None) -> str:
  """One line saying which array and file of a step is missing or unreadable, from a TensorStore error."""
  text = str(error)
  files = sorted(set(re.findall(r'local file "([^"]+)"', text)), key=len)
  arrays = [array] if array else re.findall(r'Error reading "([^"]+?)/[^"/]*" in OCDBT', text)
  parts = []
  for f in files[-1:]:  # the longest path is the most specific (the array chunk, not the database)
    parts.append(f"{'missing' if not fileio.exists(f) else 'unreadable'}: {f}")
  if arrays:
    parts.insert(0, f"array {arrays[0]}")
  first = text.strip().splitlines()[0].split(" [tensorstore_spec")[0] if text.strip() else ""
  detail = f"{type(error).__name__}: {first[:240]}"
  return "; ".join(parts + [detail]) if parts else detail


def _open_database(state_dir: str):
  context = ts_utils.get_ts_context(use_ocdbt=True)
  spec = ts_utils.build_kvstore_tspec(fileio.absolute(state_dir), use_ocdbt=True)
  return spec, context, ts.KvStore.open(spec, context=context).result()


def _await_all(futures: list[tuple[str, Any]]) -> tuple[dict[str, Any], tuple[str, BaseException] | None]:
  """Every future's result, and the first failure; all are awaited before this returns, so no read is left
  running when the caller gives up on a step."""
  done, failure = {}, None
  for name, future in futures:
    try:
      done[name] = future.result()
    except Exception as e:  # noqa: BLE001 -- classified by the caller
      failure = failure or (name, e)
  return done, failure


def open_arrays(state_dir: str, expected: Iterable[str] = (), only: Iterable[str] | None = None):
  """Opens every array of a saved state with TensorStore: (kvstore spec, context, {name: store}).

  `expected` names arrays that must be there (the step's checksums list every array it saved), `only`
  restricts the opening to those names. Raises _ReadFailure when the database, an array or an expected
  name is missing or unreadable. Orbax's own metadata reader is not used before a step is known to read:
  when it fails, reads it started go on after it and report errors long after."""
  step_dir = os.path.dirname(fileio.absolute(state_dir))
  try:
    spec, context, kv = _open_database(state_dir)
    keys = {k.decode() for k in kv.list().result()}
  except Exception as e:  # noqa: BLE001 -- classified below
    raise _ReadFailure(_is_damage(e), describe_failure(e, step_dir)) from None
  drivers = {}
  for key in keys:
    name, _, leaf = key.rpartition("/")
    if leaf in (".zarray", "zarr.json"):
      drivers[name] = "zarr" if leaf == ".zarray" else "zarr3"
  missing = sorted(set(expected) - set(drivers))
  if missing:
    raise _ReadFailure(True, f"array {missing[0]} is missing from {state_dir} ({len(missing)} of the step's "
                             f"arrays missing; its database lists {len(drivers)})")
  names = sorted(drivers if only is None else set(only) & set(drivers))
  opened, failure = _await_all([(n, ts.open({"driver": drivers[n], "kvstore": {**spec, "path": n + "/"}},
                                            open=True, read=True, context=context)) for n in names])
  if failure:
    raise _ReadFailure(_is_damage(failure[1]), describe_failure(failure[1], step_dir, failure[0]))
  return spec, context, opened


def verify_arrays(state_dir: str, checksums: dict[str, int] | None = None, only: Iterable[str] | None = None,
                  max_bytes: int = 1 << 29) -> dict[str, tuple[tuple[int, ...], str]]:
  """Reads every array of a saved state (or those in `only`) whole and compares each with its checksum;
  returns {name: (shape, dtype)}. Raises _ReadFailure naming the first array that fails. At most
  `max_bytes` of array values are held at once."""
  step_dir = os.path.dirname(fileio.absolute(state_dir))
  _, _, stores = open_arrays(state_dir, expected=checksums or (), only=only)
  groups, group, size = [], [], 0
  for name, store in stores.items():
    nbytes = int(np.prod(store.shape, dtype=np.int64)) * store.dtype.numpy_dtype.itemsize
    if group and size + nbytes > max_bytes:
      groups.append(group)
      group, size = [], 0
    group.append(name)
    size += nbytes
  groups.append(group)
  for group in groups:
    values, failure = _await_all([(n, stores[n].read()) for n in group])
    if failure:
      raise _ReadFailure(_is_damage(failure[1]), describe_failure(failure[1], step_dir, failure[0]))
    for name, value in values.items():
      if checksums and name in checksums and _has_checksum(value.dtype):
        got = host_checksum(value)
        if got != checksums[name]:
          raise _ReadFailure(True, f"array {name} fails its checksum (stored {checksums[name]:08x}, "
                                   f"read {got:08x}): its bytes changed after it was written")
      count, index = value_checks.first_non_finite(value)
      if count:  # training never saves a non-finite state (train.check_finite): changed bytes, or another writer
        raise _ReadFailure(True, f"array {name} holds {count} NaN or infinite values (first at index "
                                 f"{list(index)}): not a state training saves")
  return {n: (tuple(s.shape), s.dtype.numpy_dtype.name) for n, s in stores.items()}


def _with_retries(what: Callable[[], Any]) -> Any:
  """what(), again after each wait of RETRY_WAITS_S while it raises _ReadFailure; the last failure is raised."""
  for wait in (*RETRY_WAITS_S, None):
    try:
      return what()
    except _ReadFailure as failure:
      if wait is None:
        raise
      logging.warning(f"checkpoint read failed ({failure.detail}); trying again in {wait:g} s")
      time.sleep(wait)


def _agree(code: int) -> int:
  """The largest of every process's code: all processes take the same decision about a step."""
  if jax.process_count() == 1:
    return code
  from jax.experimental import multihost_utils
  return int(np.max(multihost_utils.process_allgather(np.asarray(code, np.int32))))


_OK, _DAMAGED, _UNREADABLE = 0, 1, 2


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(d, dict):
    return {prefix: d}
  out = {}
  for k, v in d.items():
    out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
  return out


def config_changes(saved: dict[str, Any] | None, current: dict[str, Any] | None) -> list[str]:
  """`key: checkpoint value -> this run's value` for every config value that differs."""
  if not saved or not current:
    return []
  a, b = _flatten(saved), _flatten(current)
  return [f"{k} {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}" for k in sorted(set(a) | set(b))
          if a.get(k) != b.get(k)]


def check_structure(have: dict[str, tuple[tuple[int, ...], str]], abstract_state: Any,
                    saved_config: dict[str, Any] | None, config: dict[str, Any] | None, where: str):
  """Raises CheckpointMismatchError, one line naming the arrays and the config values that differ, when the
  saved state's arrays (`have`: name -> (shape, dtype)) do not have this run's names, shapes and dtypes."""
  want = {array_name(p): (tuple(v.shape), np.dtype(v.dtype).name)
          for p, v in jax.tree_util.tree_flatten_with_path(abstract_state)[0]}
  order = lambda names: sorted(names, key=lambda k: (not k.startswith("params."), k))  # parameters first
  diffs = [f"{k}: not in the checkpoint" for k in order(set(want) - set(have))]
  diffs += [f"{k}: not in this run's state" for k in order(set(have) - set(want))]
  diffs += [f"{k}: checkpoint {have[k][0]} {have[k][1]}, this run {want[k][0]} {want[k][1]}"
            for k in order(set(want) & set(have)) if have[k] != want[k]]
  if not diffs:
    return
  changes = config_changes(saved_config, config)
  shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
  changed = ("config changed since the checkpoint: " + ", ".join(changes[:12])
             + (f", and {len(changes) - 12} more" if len(changes) > 12 else "")) if changes else \
      "no config value differs from the checkpoint's"
  raise CheckpointMismatchError(
      f"{where} does not fit this run's state ({len(diffs)} arrays differ: {shown}); {changed}; nothing was "
      "moved or deleted: put the checkpoint's settings back to resume it, or use a new workdir")


# ---------------------------------------------------------------------------------------------------
# Resuming: damaged steps, changed configs, changed data iterators, changed data.

# What a data position means. The reference values live in each checkpoint's own metadata, not in the
# workdir's config.json: the metadata travels with the step whose position it describes, also when a
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


@dataclasses.dataclass
class Resumed:
  """What `restore_for_resume` found. step None: no checkpoint, start afresh. iterator_restored False: the
  data iterator must be rebuilt from the step. metadata: the step's custom metadata (evaluations, config)."""
  manager: ocp.CheckpointManager
  step: int | None = None
  state: Any = None
  iterator_restored: bool = False
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


def _check_step(manager, step: int, step_dir: str, abstract_state, data_spec, config) -> dict[str, Any]:
  """The step's metadata when it may be restored; raises _ReadFailure (damaged or unreadable), ValueError
  (other data) or CheckpointMismatchError (another model)."""
  where = f"checkpoint {step_dir}"

  def read_metadata():
    try:
      return dict(manager.metadata(step).custom_metadata or {})
    except Exception as e:  # noqa: BLE001
      raise _ReadFailure(_is_damage(e), f"its metadata does not read: {describe_failure(e, step_dir)}") from None

  custom = _with_retries(read_metadata)
  check_data_spec(custom.get("data"), data_spec, where)
  state_dir = os.path.join(step_dir, "state")
  checksums = custom.get("checksums")
  _, _, stores = _with_retries(lambda: open_arrays(state_dir, expected=checksums or ()))
  have = {n: (tuple(s.shape), s.dtype.numpy_dtype.name) for n, s in stores.items()}
  check_structure(have, abstract_state, custom.get("config"), config, where)
  _with_retries(lambda: verify_arrays(state_dir, checksums=checksums))
  return custom


def restore_for_resume(make_manager: Callable[[], ocp.CheckpointManager], abstract_state: Any, data_iter: Any,
                       data_spec: dict[str, Any], iterator_spec: dict[str, Any],
                       config: dict[str, Any] | None = None) -> Resumed:
  """The newest checkpoint that restores, with its data position (see the module docstring for the checks).

  Damaged steps are reported, moved aside and the next older one is tried; `CheckpointError` lists every
  step tried when none restores, or says which step could not be read now (nothing moved). A step that does
  not fit this run raises CheckpointMismatchError, other training data ValueError. `iterator_restored` is
  False when the data iterator must be rebuilt from the step: the step was written with other iterator
  settings (worker count, prefetching, Grain version, process count) or its Grain state does not load."""
  manager = make_manager()
  directory = str(manager.directory)
  tried = []
  for step in sorted(manager.all_steps(), reverse=True):
    step_dir = os.path.join(directory, str(step))
    failure = None
    try:
      custom = _check_step(manager, step, step_dir, abstract_state, data_spec, config)
    except _ReadFailure as e:
      failure = e
    code = _agree(_OK if failure is None else _DAMAGED if failure.damaged else _UNREADABLE)
    if code == _UNREADABLE or (code != _OK and failure is not None and not failure.damaged):
      detail = failure.detail if failure else "another process could not read it"
      raise CheckpointError(
          f"checkpoint step {step} ({step_dir}) could not be read after {len(RETRY_WAITS_S) + 1} attempts "
          f"({detail}); this does not say the files are damaged, so nothing was moved or deleted: rerun "
          "when the storage answers")
    if code == _DAMAGED:
      detail = failure.detail if failure else "damaged as another process read it"
      moved = move_aside(directory, step)
      logging.warning(f"checkpoint step {step} is damaged ({detail}); moved it to {moved} and trying the "
                      "next older step")
      tried.append(f"step {step}: {detail} (moved to {moved})")
      manager.close()
      manager = make_manager()
      continue
    state = _restore_verified(manager, step, step_dir, abstract_state)
    return _with_iterator(manager, step, step_dir, state, custom, data_iter, iterator_spec)
  if tried:
    raise CheckpointError(f"no checkpoint in {directory} restores; tried, newest first:\n  "
                          + "\n  ".join(tried) + "\nthe damaged steps were moved aside, not deleted; "
                          "remove the workdir's checkpoints to start afresh")
  return Resumed(manager)


def _restore_verified(manager, step: int, step_dir: str, abstract_state) -> Any:
  """Orbax's restore of a step whose arrays were just read whole; a failure now is not the files'."""
  for wait in (*RETRY_WAITS_S, None):
    try:
      return restore_state(manager, step, abstract_state)
    except Exception as e:  # noqa: BLE001
      if wait is None:
        raise CheckpointError(
            f"checkpoint step {step} ({step_dir}) reads whole but Orbax did not restore it "
            f"({describe_failure(e, step_dir)}); nothing was moved or deleted") from e
      logging.warning(f"restoring checkpoint step {step} failed ({type(e).__name__}: {str(e)[:200]}); "
                      f"trying again in {wait:g} s")
      time.sleep(wait)


def _with_iterator(manager, step, step_dir, state, custom, data_iter, iterator_spec) -> Resumed:
  saved_iterator = custom.get("iterator")
  if saved_iterator is None:  # a step that does not say how its iterator was built: its state may not fit
    why = "the step records no data iterator settings"
  elif saved_iterator != iterator_spec:
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
      return Resumed(manager, step, state, True, custom)
    except Exception as e:  # noqa: BLE001 -- a state format this Grain version or iterator cannot read
      why = f"its Grain iterator state does not load here ({type(e).__name__}: {e})"
  logging.warning(f"resuming from {step_dir}; data position rebuilt from step {step}: {why}")
  return Resumed(manager, step, state, False, custom)


# ---------------------------------------------------------------------------------------------------
# Initialising from another run (fine-tuning, linear probe, inference).


def saved_note(workdir: str, error: BaseException | None = None) -> str:
  """What a run that stops on a fault has kept: "checkpoint 10 is complete; step 15 was not written"
  (the unfinished step from the error's paths, else from Orbax's temporary folders). Never raises."""
  root = os.path.join(workdir, CHECKPOINT_DIR)
  try:  # listed, not opened by a CheckpointManager: a step is complete under its final name (and, in
    # a bucket, with its commit file: _atomicity)
    names = fileio.listdir(root) if fileio.isdir(root) else []
    bucket = fileio.is_url(root)
    steps = sorted(int(n) for n in names if n.isdigit() and (
        not bucket or fileio.exists(os.path.join(root, n, "commit_success.txt"))))
  except Exception:  # noqa: BLE001 -- the storage that failed may not list either
    return f"the checkpoints in {root} could not be listed"
  text = " ".join(str(x) for x in faults.chain(error)) if error is not None else ""
  m = re.search(re.escape(CHECKPOINT_DIR) + r"/(\d+)(?:\.orbax-checkpoint-tmp|/)", text)
  unfinished = [int(n.split(".")[0]) for n in names if re.fullmatch(r"\d+\.orbax-checkpoint-tmp.*", n)]
  failed = int(m.group(1)) if m else max(unfinished, default=None)
  kept = f"checkpoint {steps[-1]} is complete" if steps else "no checkpoint is complete"
  if failed is not None and failed not in steps:
    kept += f"; step {failed} was not written"
  return kept


def _read_only_manager(root: str, best_metric: str) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(read_only=True, best_fn=best_key(best_metric), best_mode="max",
                                         **_atomicity(root))
  return ocp.CheckpointManager(root, options=options, item_names=("state", "data_iter"))


def _best_metric_of(root: str, steps: list[int]) -> str:
  """The metric the run ranked its steps by, from its newest step's metadata ("ua" when not recorded)."""
  try:
    return str(step_metadata(os.path.join(root, str(max(steps)))).get("selection", {}).get("metric", "ua"))
  except Exception:  # noqa: BLE001 -- unreadable metadata: the restore says what is wrong
    return "ua"


def resolve_state_path(path: str, which: str | int = "best") -> str:
  """A workdir, a `checkpoints/` folder or a step folder -> the step's `state` item folder.

  which: "best" (the best validation step; the latest when no step was evaluated, logged), "latest", or a
  step number."""
  path = fileio.absolute(path.rstrip("/"))
  check_orbax_can_write(path)
  if os.path.basename(path) == "state" and fileio.isdir(path):
    return path
  if fileio.isdir(os.path.join(path, "state")):  # a step folder
    return os.path.join(path, "state")
  root = os.path.join(path, CHECKPOINT_DIR) if fileio.isdir(os.path.join(path, CHECKPOINT_DIR)) else path
  if not fileio.isdir(root):
    raise FileNotFoundError(f"{path}: not a workdir, checkpoint folder or checkpoint step")
  manager = _read_only_manager(root, "ua")
  steps = manager.all_steps()
  if not steps:
    manager.close()
    raise FileNotFoundError(f"{root}: holds no finished checkpoint")
  if which == "latest":
    step = manager.latest_step()
  elif which == "best":
    metric = _best_metric_of(root, list(steps))
    manager.close()
    manager = _read_only_manager(root, metric)
    step = manager.best_step()
    if step is None:
      step = manager.latest_step()
      logging.info(f"{root}: no step carries validation metrics (a run without a validation split); "
                   f"using the latest, step {step}")
  else:
    step = int(which)
    if step not in steps:
      manager.close()
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

  The arrays are checked first (read whole, compared with their checksums): a damaged step raises
  CheckpointError naming the step and the array, missing or unreadable file."""
  check_orbax_can_write(state_path)
  state_path = fileio.absolute(state_path)
  step_dir = os.path.dirname(state_path)
  try:
    checksums = step_metadata(step_dir).get("checksums")
  except Exception:  # noqa: BLE001 -- a step folder copied without its metadata: no checksums to compare
    checksums = None
  variables = lambda names: [n for n in names if n.split(".")[0] in ("params", "batch_stats")]
  try:
    wanted = variables(checksums or _listed_arrays(state_path))
    read = _with_retries(lambda: verify_arrays(
        state_path, checksums={n: checksums[n] for n in wanted} if checksums else None, only=wanted))
  except _ReadFailure as e:
    kind = "is damaged" if e.damaged else "could not be read"
    raise CheckpointError(f"checkpoint step {os.path.basename(step_dir)} ({step_dir}) {kind}: {e.detail}") \
        from None
  if not any(n.startswith("params.") for n in read):
    raise ValueError(f"{state_path}: no 'params' in checkpoint (arrays: {sorted(read)[:5]} ...)")
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(state_path)
  tree = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata.tree
  wanted = {k: tree[k] for k in ("params", "batch_stats") if k in tree}
  target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), wanted)
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
  restored = checkpointer.restore(state_path, args=ocp.args.PyTreeRestore(
      item=target, restore_args=restore_args, partial_restore=True))
  return {k: restored[k] for k in wanted}


def _listed_arrays(state_dir: str) -> list[str]:
  """Array names of a step that recorded no checksums (its database's listing)."""
  try:
    return list(open_arrays(state_dir)[2])
  except _ReadFailure:
    return []  # verify_arrays, called next, reports why


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
