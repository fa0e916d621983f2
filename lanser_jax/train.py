"""Training and evaluation of any backbone of models.py on log-mel feature shards: `train_and_evaluate(config, workdir)`.

One program for 1 CPU, 8 fake CPU devices, a GPU node, a TPU slice and many hosts: `jax.jit` over a 1-D
`Mesh` named "data"; batches are sharded over it, parameters and optimiser state are replicated (or split
over a 2-D mesh as config.sharding says: lanser_jax/engine/sharding.py); BatchNorm
statistics are global because the compiler sees the whole batch.

Resume order: (1) a checkpoint in `<workdir>/checkpoints` (state and data-iterator position); else
(2) `config.init_from` (backbone of another run, new head); else (3) fresh initialisation from `config.seed`.
Per-step randomness is `fold_in(seed, step)`, so a resumed run computes exactly what an unbroken one would.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import os
import time
from typing import Any

import flax
import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import traverse_util
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from lanser_jax.input_pipeline import pipeline, records, sampler, subsets
from lanser_jax.engine import checkpointing, metrics, sharding, value_checks, writers
from lanser_jax.utils import faults, fileio
from lanser_jax import config_checks, models


class TrainState(train_state.TrainState):
  batch_stats: Any


# ---------------------------------------------------------------------------------------------------
# Optimiser.


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  o = config.optimizer
  warmup = min(o.warmup_steps, max(config.num_train_steps - 1, 0))
  if o.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, o.learning_rate, warmup, max(config.num_train_steps, 1),
                                              end_value=o.learning_rate * o.end_lr_factor)
  if o.schedule == "constant":
    return optax.join_schedules([optax.linear_schedule(0.0, o.learning_rate, max(warmup, 1)),
                                 optax.constant_schedule(o.learning_rate)], [warmup])
  raise ValueError(f"config.optimizer.schedule={o.schedule!r}: expected 'cosine' or 'constant'")


def make_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  o = config.optimizer
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # kernels, not norms or biases
  if o.name == "adamw":
    tx = optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=decay_mask)
  elif o.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(o.weight_decay, mask=decay_mask),
                     optax.sgd(schedule, momentum=o.momentum, nesterov=o.nesterov))
  else:
    raise ValueError(f"config.optimizer.name={o.name!r}: expected 'adamw' or 'sgd'")
  if o.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), tx)
  if config.freeze_backbone:  # linear probe: only the head moves
    labels = lambda params: {k: ("head" if k == "head" else "frozen") for k in params}
    tx = optax.multi_transform({"head": tx, "frozen": optax.set_to_zero()}, labels)
  return tx


# ---------------------------------------------------------------------------------------------------
# Loss, augmentation, steps.


def spec_augment(rng: jax.Array, x: jax.Array, sa: ml_collections.ConfigDict) -> jax.Array:
  """SpecAugment time and frequency masks (Park et al. 2019), drawn per example on device; masked values
  become 0, the per-bin mean after normalisation."""
  batch, frames, bins = x.shape

  def masks(key, count, max_width, size):
    if count == 0 or max_width == 0:
      return jnp.zeros((batch, size), bool)
    k1, k2 = jax.random.split(key)
    width = jax.random.randint(k1, (batch, count, 1), 0, max_width + 1)
    start = jax.random.randint(k2, (batch, count, 1), 0, max(size - max_width, 1))
    pos = jnp.arange(size)[None, None, :]
    return jnp.any((pos >= start) & (pos < start + width), axis=1)

  kt, kf = jax.random.split(rng)
  drop = (masks(kt, sa.time_masks, sa.max_time_width, frames)[:, :, None]
          | masks(kf, sa.freq_masks, sa.max_freq_width, bins)[:, None, :])
  return jnp.where(drop, 0.0, x)


def cross_entropy(logits: jax.Array, batch: dict[str, jax.Array], num_classes: int, target: str,
                  label_smoothing: float) -> jax.Array:
  if target == "scores":  # soft weak labels: the score vector, normalised to a distribution
    s = batch["scores"]
    targets = s / jnp.maximum(jnp.sum(s, axis=-1, keepdims=True), 1e-9)
  else:
    targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], num_classes), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def make_train_step(model: nn.Module, config: ml_collections.ConfigDict, num_classes: int,
                    normalizer: pipeline.Normalizer, schedule: optax.Schedule):
  """The step takes the pipeline's float16 crops + lengths; `normalizer.device` finishes them inside it.
  `schedule` is the optimiser's own (make_optimizer's), so the logged learning rate is the one applied."""
  base_key = jax.random.key(config.seed)

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    key = jax.random.fold_in(base_key, state.step)
    aug_key, dropout_key = jax.random.split(key)
    x, mask = normalizer.device(batch)
    if config.specaugment.enabled:
      x = spec_augment(aug_key, x, config.specaugment)

    def loss_fn(params):
      (logits, _), updates = model.apply(
          {"params": params, "batch_stats": state.batch_stats}, x, mask, train=True,
          freeze_backbone=config.freeze_backbone, rngs={"dropout": dropout_key}, mutable=["batch_stats"])
      loss = jnp.mean(cross_entropy(logits, batch, num_classes, config.data.target, config.label_smoothing))
      return loss, (logits, updates.get("batch_stats", state.batch_stats))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    stats = {"train/loss": loss,
             "train/accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
             "train/grad_norm": optax.tree.norm(grads),
             "train/learning_rate": schedule(state.step - 1)}
    return state, stats

  return train_step


def make_eval_step(model: nn.Module, normalizer: pipeline.Normalizer):
  """Logits of a window batch: models.window_forward, the function serving (serving/classifier.py) applies too."""
  forward = models.window_forward(model, normalizer)

  def eval_step(state: TrainState, batch: dict[str, jax.Array]):
    logits, _ = forward({"params": state.params, "batch_stats": state.batch_stats}, batch)
    return logits

  return eval_step


# ---------------------------------------------------------------------------------------------------
# Host <-> device.


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles the global batch from every process's slice (a plain device_put on one host)."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


class DevicePrefetch:
  """Batches of a host iterator, put on the devices `size` steps before they are used (as big_vision's
  prefetch): the transfer of the next batch, and the host work of the one after, overlap the running step,
  whose dispatch is asynchronous. Keys in `host_keys` stay NumPy arrays on the host.

  Its `get_state`/`set_state` are those of the host iterator at the first batch not yet handed out, so a
  checkpoint records the step's data position, not the prefetcher's (Grain's checkpoint handler treats an
  iterator that is not a Grain DatasetIterator as one whose state is bytes: JSON bytes here)."""

  def __init__(self, host_iter, sharding: NamedSharding, size: int = 2, host_keys: tuple[str, ...] = ()):
    self._it, self._sharding, self._size, self._host_keys = host_iter, sharding, size, host_keys
    self._queue: collections.deque = collections.deque()  # (host state before the batch, batch)

  def __iter__(self):
    return self

  def _state(self):
    get_state = getattr(self._it, "get_state", None)
    return copy.deepcopy(get_state()) if get_state else None

  def _put(self) -> bool:
    state = self._state()
    try:
      batch = next(self._it)
    except StopIteration:
      return False
    host = {k: batch.pop(k) for k in self._host_keys if k in batch}
    self._queue.append((state, {**to_global(batch, self._sharding), **host}))
    return True

  def __next__(self) -> dict[str, Any]:
    while len(self._queue) <= self._size and self._put():
      pass
    if not self._queue:
      raise StopIteration
    return self._queue.popleft()[1]

  def get_state(self) -> bytes:
    state = self._queue[0][0] if self._queue else self._state()
    return json.dumps(state).encode()

  def set_state(self, state: bytes | dict[str, Any]):
    self._queue.clear()
    self._it.set_state(json.loads(state) if isinstance(state, (bytes, str)) else state)

  def start_prefetch(self):
    start = getattr(self._it, "start_prefetch", None)
    if start:
      start()

  def close(self):
    self._queue.clear()
    close = getattr(self._it, "close", None)
    if close:
      close()


def to_local(x: jax.Array) -> np.ndarray:
  """This process's rows of a batch-sharded array, in the order it fed them."""
  if jax.process_count() == 1:
    return np.asarray(x)
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  seen, rows = set(), []
  for s in shards:  # replicas of a row on several local devices appear once
    start = s.index[0].start or 0
    if start not in seen:
      seen.add(start)
      rows.append(np.asarray(s.data))
  return np.concatenate(rows)


def global_sum(x: np.ndarray) -> np.ndarray:
  return np.asarray(multihost_utils.process_allgather(x)).sum(0) if jax.process_count() > 1 else x


def global_max(x: int) -> int:
  return int(np.max(multihost_utils.process_allgather(np.asarray(x)))) if jax.process_count() > 1 else x


# ---------------------------------------------------------------------------------------------------
# Evaluation.


def utterance_logits(eval_fn, state: TrainState, eval_set: pipeline.EvalSet, normalizer: pipeline.Normalizer,
                     batch_size: int, sharding: NamedSharding, num_workers: int = 0,
                     worker_buffer_size: int = 2) -> np.ndarray:
  """float32 [local utterances, classes]: this process's utterances, logits averaged over their windows
  (lanser_jax/input_pipeline/windows.py, as serving averages them). Every process runs the same number of batches."""
  local_batch = batch_size // jax.process_count()
  num_batches = global_max(eval_set.num_batches(local_batch))
  utts, logits = [], []
  batches = pipeline.eval_batches(eval_set, local_batch, normalizer, num_batches, on_device=True,
                                  num_workers=num_workers, worker_buffer_size=worker_buffer_size)
  for batch in DevicePrefetch(batches, sharding, host_keys=("utt", "weight")):
    utt = batch.pop("utt")
    batch.pop("weight")
    logits.append(to_local(eval_fn(state, batch)))
    utts.append(utt)
  return pipeline.average_window_logits(eval_set, np.concatenate(utts), np.concatenate(logits))


def check_finite_logits(utt_logits: np.ndarray, eval_set: pipeline.EvalSet):
  """Raises NonFiniteValueError on every process when any process has an utterance whose logits are NaN or
  infinite (their argmax would be a constant class), naming this process's first such utterance."""
  bad = np.flatnonzero(~np.all(np.isfinite(utt_logits), axis=1))
  total = int(global_sum(np.asarray([bad.size]))[0])
  if total:
    first = f"; first here: {eval_set.utt_ids[bad[0]]}" if bad.size else ""
    raise value_checks.NonFiniteValueError(
        f"evaluation of split {eval_set.split!r} ({eval_set.data_dir}): the logits of {total} utterances are NaN "
        f"or infinite{first}; the parameters or these records hold non-finite values (records are checked "
        "when read; a state restored from a checkpoint is checked at restore)")


def evaluate(eval_fn, state: TrainState, eval_set: pipeline.EvalSet, normalizer: pipeline.Normalizer,
             batch_size: int, sharding: NamedSharding, label_names: list[str], num_workers: int = 0,
             worker_buffer_size: int = 2, per_utterance: bool = False) -> dict[str, Any]:
  """Whole-utterance metrics over all processes: window logits averaged per utterance. `per_utterance` adds
  "predictions" (utt ids, predicted and true class indices, speakers) for the intervals and paired tests of
  lanser_jax/tools/stats.py; with several processes, those of process 0's utterances only (and says so)."""
  utt_logits = utterance_logits(eval_fn, state, eval_set, normalizer, batch_size, sharding, num_workers,
                                worker_buffer_size)
  check_finite_logits(utt_logits, eval_set)
  preds = np.argmax(utt_logits, axis=-1)
  cm = global_sum(metrics.confusion_matrix(eval_set.labels, preds, len(label_names)))
  result = metrics.from_confusion(cm, label_names)
  if per_utterance:
    result["predictions"] = {"utt_ids": list(eval_set.utt_ids), "pred": preds.astype(int).tolist(),
                             "label": eval_set.labels.astype(int).tolist(), "speaker": list(eval_set.speakers),
                             "complete": jax.process_count() == 1}
  return result


# ---------------------------------------------------------------------------------------------------
# Setup.


def label_names_of(info: dict[str, Any], target: str) -> list[str]:
  if target == "scores":
    if not info.get("score_names"):
      raise ValueError("config.data.target='scores' but the dataset has no score_names (no soft labels)")
    return list(info["score_names"])
  if target != "label":
    raise ValueError(f"config.data.target={target!r}: expected 'label' or 'scores'")
  return list(info["label_names"])


def save_run_info(workdir: str, config: ml_collections.ConfigDict, data_dir: str, stats_file: str,
                  label_names: list[str]):
  """The resolved config and the data description, so inference never asks the user to re-enter them."""
  if jax.process_index() != 0:
    return
  fileio.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=1, sort_keys=True))
  fileio.makedirs(os.path.join(workdir, "data"))
  fileio.copy(os.path.join(data_dir, "dataset.json"), os.path.join(workdir, "data", "dataset.json"))
  fileio.copy(stats_file, os.path.join(workdir, "data", "stats.json"))
  fileio.write_text(os.path.join(workdir, "data", "label_names.json"), json.dumps(label_names))


def data_spec_of(c: ml_collections.ConfigDict, info: dict[str, Any], subset) -> dict[str, Any]:
  """What the data position of a checkpoint indexes: resuming is refused when any of it changed.
  The dataset is described by content (the train split's size and labels), not by its path, so a
  feature folder copied to another machine or mount point still resumes."""
  split = info["splits"].get(c.data.train_split, {})
  spec = {"dataset": {"train_split": c.data.train_split, "num_examples": split.get("num_examples"),
                      "num_frames": split.get("num_frames"), "label_names": list(info["label_names"])},
          "label_subset": None, "global_batch_size": int(c.batch_size), "data_dir": fileio.absolute(c.data.dir)}
  if subset is not None:
    digest = hashlib.sha1(np.asarray(subset, np.int64).tobytes()).hexdigest()[:16]
    spec["label_subset"] = {"label_fraction": float(c.data.label_fraction), "subset_seed": int(c.data.subset_seed),
                            "num_records": len(subset), "sha1": digest}
  return spec


def iterator_spec_of(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """How the data iterator was built: a saved Grain state is only loaded into the same kind. `sampler` names
  the order a position indexes: a checkpoint of another order is resumed from its step in this one."""
  return {"num_workers": int(c.data.num_workers), "worker_buffer_size": int(c.data.worker_buffer_size),
          "process_count": jax.process_count(), "grain": grain.__version__, "sampler": sampler.SAMPLER}


def log_overview(config: ml_collections.ConfigDict, params: Any):
  """The resolved config and every parameter array (name, shape, count) in the log, once at start, as
  big_vision does: what ran is readable from the log alone."""
  logging.info("config:\n%s", config)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  rows = [f"  {jax.tree_util.keystr(p, simple=True, separator='/'):<60} {str(tuple(v.shape)):<22} {v.size:>12,}"
          for p, v in flat]
  logging.info("parameters: %d arrays, %s values\n%s", len(rows), f"{models.param_count(params):,}",
               "\n".join(rows))


class NonFiniteError(FloatingPointError):
  """Training diverged: a step's loss or gradient norm is NaN or infinite."""


def check_finite(steps: list[tuple[int, dict[str, jax.Array]]], manager) -> None:
  """Raises NonFiniteError naming the first step whose loss or gradient norm is not finite.

  Called before every log, evaluation and checkpoint (one transfer for all steps since the last call,
  so the device is not synchronised every step): a diverged state is never saved, and the last good
  checkpoint stays the newest one, as big_vision stops on a NaN loss."""
  if not steps:
    return
  keys = ("train/loss", "train/grad_norm")
  values = np.asarray(jax.device_get([[s[k] for k in keys] for _, s in steps]), np.float64)
  bad = np.flatnonzero(~np.all(np.isfinite(values), axis=1))
  if not len(bad):
    return
  step, row = steps[bad[0]][0], values[bad[0]]
  manager.wait_until_finished()  # earlier (good) saves complete before the error ends the job
  last = manager.latest_step()
  kept = f"the last good checkpoint, step {last}, is kept" if last is not None else "no checkpoint was written"
  raise NonFiniteError(
      f"step {step}: non-finite {', '.join(f'{k} {v}' for k, v in zip(keys, row) if not np.isfinite(v))}; "
      f"training stopped and nothing after it was saved ({kept} in {manager.directory}). Lower "
      "config.optimizer.learning_rate, set config.optimizer.grad_clip_norm, or look for bad features "
      "(the features stage rejects NaN audio, but not features written by other tools).")


def choose_step(manager, c: ml_collections.ConfigDict, final_step: int) -> tuple[int, str]:
  """The step the final evaluation uses, and why: the best evaluated checkpoint by config.best_metric on
  the validation split (ties: the earlier step), else the final step."""
  if not c.data.eval_split:
    return final_step, "no validation split: the final step"
  best = manager.best_step()
  if best is None:
    return final_step, "no checkpoint carries validation metrics: the final step"
  return best, f"highest validation {c.best_metric} (ties: the earlier step)"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains, evaluates and checkpoints; returns (and writes to `<workdir>/results.json`) the final metrics.

  On a preemption signal it saves the step and returns `{"preempted": True, "steps": ..., "selection":
  ...}` without evaluating or writing results.json; the same call resumes. Finished runs say
  `"preempted": False`."""
  t_start = time.time()
  c = config
  checkpointing.check_best_metric(c.best_metric)  # before any work
  config_checks.check_training(c, device_count=jax.device_count(), process_count=jax.process_count())
  if c.init_from:  # another model (e.g. :runlocal's tiny): one line, here
    from lanser_jax.engine import init_from
    init_from.check_model(c.init_from, c.model)
  checkpointing.check_orbax_can_write(workdir)  # before anything is written
  fileio.makedirs(workdir)

  # ----- Data description ------------------------------------------------------------------------------
  if not c.data.dir:
    raise ValueError("config.data.dir is empty: set it to a feature folder (--config.data.dir=...)")
  info = records.read_dataset_info(c.data.dir)
  records.check_readable(c.data.dir, c.data.train_split)  # a bucket the shard reader cannot open: say so now
  label_names = label_names_of(info, c.data.target)
  num_classes = len(label_names)
  stats_file = c.data.stats_file or os.path.join(c.data.dir, "stats.json")
  normalizer = pipeline.Normalizer.from_file(stats_file)  # refuses NaN, inf or std <= 0, naming the file
  config_checks.check_training(c, mel_bins=normalizer.mel_bins)  # the checks that need the features

  # ----- Mesh and shardings ----------------------------------------------------------------------------
  mesh = sharding.make_mesh(c.sharding.mesh)  # default "data=-1": 1-D data parallelism
  data_sharding = sharding.batch_sharding(mesh)
  replicated = NamedSharding(mesh, P())
  logging.info("mesh %s over %d processes; global batch %d", dict(mesh.shape), jax.process_count(),
               c.batch_size)

  # ----- Input -----------------------------------------------------------------------------------------
  subset = None
  if c.data.label_fraction < 1.0:
    subset = subsets.nested_stratified_subset(subsets.split_labels(c.data.dir, c.data.train_split),
                                              c.data.label_fraction, c.data.subset_seed)
    logging.info("label fraction %.2f: %d training records", c.data.label_fraction, len(subset))
  def make_train_iter(start_batch: int = 0):
    return DevicePrefetch(iter(pipeline.train_dataset(
        c.data.dir, c.data.train_split, global_batch_size=c.batch_size, crop_frames=c.data.crop_frames,
        normalizer=normalizer, num_classes=num_classes, seed=c.seed, target=c.data.target, subset=subset,
        num_workers=c.data.num_workers, worker_buffer_size=c.data.worker_buffer_size,
        process_index=jax.process_index(), process_count=jax.process_count(), start_batch=start_batch,
        on_device=True)), data_sharding)

  train_iter = make_train_iter()
  eval_sets = {}
  for split in filter(None, (c.data.eval_split, c.data.test_split)):
    eval_sets[split] = pipeline.make_eval_set(
        c.data.dir, split, crop_frames=c.data.crop_frames, hop_frames=c.data.eval_hop_frames,
        num_classes=num_classes, target=c.data.target, process_index=jax.process_index(),
        process_count=jax.process_count())

  # ----- Model and state -------------------------------------------------------------------------------
  model = models.model_from_config(c, num_classes)
  schedule = make_schedule(c)
  tx = make_optimizer(c, schedule)
  mel_bins = normalizer.mean.shape[0]

  @jax.jit
  def init(key):
    variables = model.init(key, jnp.zeros((1, c.data.crop_frames, mel_bins)), train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"],
                             batch_stats=variables.get("batch_stats", {}), tx=tx)

  abstract_state = jax.eval_shape(init, jax.random.key(c.seed))
  state_sharding = sharding.state_shardings(mesh, abstract_state, c.sharding.rules)  # default replicated
  abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                abstract_state, state_sharding)

  # ----- Checkpoint: resume, else init_from, else fresh ------------------------------------------------
  data_spec = data_spec_of(c, info, subset)
  iterator_spec = iterator_spec_of(c)
  config_dict = json.loads(c.to_json_best_effort())
  resumed = checkpointing.restore_for_resume(
      lambda: checkpointing.create_manager(workdir, c.keep_checkpoints, c.best_metric), abstract_state,
      train_iter, data_spec, iterator_spec, config_dict)
  manager, latest, state = resumed.manager, resumed.step, resumed.state
  # Every validation evaluation so far (they travel with each checkpoint, so a resumed run knows them).
  evaluations = [e for e in resumed.metadata.get("evaluations", []) if latest is not None and e["step"] <= latest]
  if latest is not None and not resumed.iterator_restored:
    # Each batch is a function of its index, so the data position follows from the step whatever the
    # iterator's worker count, prefetching, Grain version or process count was.
    train_iter = make_train_iter(start_batch=int(state.step))
  elif latest is None:
    state = jax.jit(init, out_shardings=state_sharding)(jax.random.key(c.seed))
    if c.init_from:
      source = checkpointing.resolve_state_path(c.init_from, c.init_from_step)
      value_checks.check_init_from_features(source, c.data.dir, info["feature"], mel_bins)
      params, batch_stats = checkpointing.init_backbone_from(
          source, c.init_from_step, flax.core.unfreeze(state.params), state.batch_stats)
      state = jax.device_put(TrainState.create(apply_fn=model.apply, params=params,
                                               batch_stats=batch_stats, tx=tx), state_sharding)
      logging.info("initialised backbone from %s (%s)", c.init_from, c.init_from_step)
  logging.info("model %s: %s parameters", c.model.name, f"{models.param_count(state.params):,}")
  if latest is None:
    log_overview(c, state.params)
  save_run_info(workdir, c, c.data.dir, stats_file, label_names)  # after the checkpoint was found to fit
  selection = {"metric": c.best_metric, "split": c.data.eval_split or None}

  # ----- Compiled steps ----------------------------------------------------------------------------------
  train_step = jax.jit(make_train_step(model, c, num_classes, normalizer, schedule), donate_argnums=(0,),
                       in_shardings=(state_sharding, data_sharding),
                       out_shardings=(state_sharding, replicated))
  eval_step = jax.jit(make_eval_step(model, normalizer), in_shardings=(state_sharding, data_sharding),
                      out_shardings=data_sharding)

  # ----- Loop --------------------------------------------------------------------------------------------
  writer = writers.create_writer(workdir)
  if latest is None:
    writer.write_hparams(traverse_util.flatten_dict(c.to_dict(), sep="."))
  step = int(state.step)
  progress = writers.Progress(c.num_train_steps, c.batch_size, step)
  pending: list[dict[str, jax.Array]] = []
  unchecked: list[tuple[int, dict[str, jax.Array]]] = []  # steps whose loss nobody has looked at yet
  last_eval = None
  while step < c.num_train_steps:
    batch = next(train_iter)  # on the devices already (DevicePrefetch)
    state, stats = train_step(state, batch)
    pending.append(stats)
    step += 1
    unchecked.append((step, stats))
    if not progress.started:  # the first step includes compilation: the rate is timed from its end
      jax.block_until_ready(stats)
      progress.start(step)
      faults.remember_workers()  # the data workers run now: one that dies later is named (faults.py)

    do_log = step % c.log_every_steps == 0 or step == c.num_train_steps
    do_eval = c.data.eval_split and (step % c.eval_every_steps == 0 or step == c.num_train_steps)
    do_save = (do_eval or step % c.checkpoint_every_steps == 0 or step == c.num_train_steps
               or manager.reached_preemption(step))
    if do_log or do_eval or do_save:  # before anything is logged, evaluated or saved
      check_finite(unchecked, manager)  # waits for the steps to finish: step time, not a pause
      unchecked = []

    if do_log:
      means = {k: float(np.mean([float(s[k]) for s in pending])) for k in pending[0]}
      means.update(progress(step, means))
      writer.write_scalars(step, means)
      pending = []

    t_pause = time.time()
    metrics_now = None
    if do_eval:
      result = evaluate(eval_step, state, eval_sets[c.data.eval_split], normalizer, c.eval_batch_size,
                        data_sharding, label_names, c.data.num_workers, c.data.worker_buffer_size, per_utterance=True)
      metrics_now = metrics.scalars(result)
      writer.write_scalars(step, {f"{c.data.eval_split}/{k}": v for k, v in metrics_now.items()})
      logging.info("step %d %s: WA %.4f UA %.4f macro-F1 %.4f", step, c.data.eval_split,
                   result["wa"], result["ua"], result["macro_f1"])
      last_eval = result
      evaluations.append({"step": step, **metrics_now})
    if do_save:
      checkpointing.save(manager, step, state, train_iter, metrics_now,
                         {"data": data_spec, "iterator": iterator_spec, "config": config_dict,
                          "selection": selection, "evaluations": evaluations})
      if manager.reached_preemption(step):
        logging.warning("preemption signal: saved step %d and stopping; the same command resumes", step)
        manager.wait_until_finished()
        manager.close()
        return {"preempted": True, "steps": step, "label_names": label_names,
                "selection": {**selection, "evaluations": evaluations}, "train_wall_s": time.time() - t_start}
    progress.exclude(time.time() - t_pause)
  manager.wait_until_finished()

  # ----- Final evaluation with the best checkpoint ------------------------------------------------------
  best_step, rule = choose_step(manager, c, step)
  logging.info("final evaluation at step %d: %s", best_step, rule)
  if best_step != step:
    state = checkpointing.restore_state(manager, best_step, abstract_state)
  results: dict[str, Any] = {"preempted": False, "steps": step, "best_step": best_step, "label_names": label_names,
                             "selection": {**selection, "rule": rule, "evaluations": evaluations},
                             "train_wall_s": time.time() - t_start}
  results["num_train_examples"] = len(subset) if subset is not None else info["splits"][c.data.train_split].get(
      "num_examples")
  for split, eval_set in eval_sets.items():
    result = (last_eval if split == c.data.eval_split and best_step == step and last_eval
              else evaluate(eval_step, state, eval_set, normalizer, c.eval_batch_size, data_sharding,
                            label_names, c.data.num_workers, c.data.worker_buffer_size, per_utterance=True))
    results[split] = {**result, "step": best_step}
    logging.info("final %s (step %d): WA %.4f UA %.4f macro-F1 %.4f", split, best_step,
                 result["wa"], result["ua"], result["macro_f1"])
  if jax.process_index() == 0:
    records.write_json(os.path.join(workdir, "results.json"), results)
  writer.flush()
  writer.close()
  manager.close()
  return results

