"""The device mesh and how the train state and batches lie on it, chosen by `config.sharding`.

`config.sharding.mesh` names the mesh axes and their sizes, e.g. "data=-1" (today's 1-D data parallelism,
the default), "data=2,fsdp=4" or "data=4,model=2"; -1 takes the devices the other axes leave. Axis names:
  data   batch split, parameters replicated along it;
  fsdp   batch split too (it is data parallelism), but parameters and optimiser state are split along it
         and gathered by the compiler where a layer needs them (ZeRO-3 / FSDP);
  model  batch replicated, parameters split along it as the rules say (Megatron-style tensor parallelism).
`config.sharding.rules` says which arrays are split how: a named set ("replicated", the default; "fsdp";
"tensor") or rules of the form `regex=spec;regex=spec`. Each array of the train state (parameters, batch
statistics and optimiser moments alike, so a moment always lies like its parameter) takes the spec of the
first regex that `re.search`es its path, e.g. "params/block1/attention/query/kernel" or
"opt_state/0/mu/block1/attention/query/kernel"; no match means replicated. A spec is comma-separated, one
entry per leading dimension: a mesh axis name, or "None" for not split (`None,model` = PartitionSpec(None,
"model")); or `@axis`: split the largest dimension the axis size divides (replicated if none does), which
is how "fsdp" shards every kernel. A rule that names an axis the mesh lacks, has more entries than the
array has dimensions, or does not divide a dimension is an error naming the array and the rule.

The compiler (GSPMD) inserts the collectives; orbax restores a checkpoint into whichever sharding the
restoring job asks for, so a run can change its mesh, rules or process count between save and resume.
"""

from __future__ import annotations

import math
import re
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")  # the batch is split over these; "model" devices see the same examples

RULE_SETS = {
    "replicated": "",
    "fsdp": r".=@fsdp",
    # Split attention heads and the feed-forward hidden layer (Shoeybi et al. 2019, Megatron-LM) of the
    # Conformer and spectrogram transformer (lanser_jax/models/transformer_layers.py's kernel layouts).
    "tensor": ";".join([
        r"(query|key|value|pos)/kernel$=None,model",  # [dim, heads, head_dim]
        r"(query|key|value)/bias$=model",  # [heads, head_dim]
        r"pos_bias_[uv]$=model",  # [heads, head_dim]
        r"attention/out/kernel$=model",  # [heads, head_dim, dim]
        r"dense1/kernel$=None,model",  # [dim, hidden]
        r"dense1/bias$=model",
        r"dense2/kernel$=model",  # [hidden, dim]
    ]),
}


def parse_mesh(spec: str, num_devices: int) -> dict[str, int]:
  """'data=2,fsdp=-1' -> {'data': 2, 'fsdp': num_devices // 2}, checked against the device count."""
  shape: dict[str, int] = {}
  for token in filter(None, (t.strip() for t in spec.split(","))):
    name, eq, size = token.partition("=")
    if name not in AXES or not eq:
      raise ValueError(f"config.sharding.mesh={spec!r}: {token!r} is not 'axis=size' with axis one of {AXES}")
    if name in shape:
      raise ValueError(f"config.sharding.mesh={spec!r}: axis {name!r} given twice")
    try:
      shape[name] = int(size)
    except ValueError:
      raise ValueError(f"config.sharding.mesh={spec!r}: size {size!r} of {name!r} is not an integer") from None
  if "data" not in shape:
    raise ValueError(f"config.sharding.mesh={spec!r}: needs a 'data' axis (data=-1 for the rest)")
  free = [k for k, v in shape.items() if v == -1]
  if len(free) > 1 or any(v < 1 and v != -1 for v in shape.values()):
    raise ValueError(f"config.sharding.mesh={spec!r}: sizes must be positive, with at most one -1")
  fixed = math.prod(v for v in shape.values() if v != -1)
  if free:
    if num_devices % fixed:
      raise ValueError(f"config.sharding.mesh={spec!r}: {num_devices} devices are not divisible by {fixed}")
    shape[free[0]] = num_devices // fixed
  if math.prod(shape.values()) != num_devices:
    raise ValueError(f"config.sharding.mesh={spec!r} has {math.prod(shape.values())} devices, "
                     f"but there are {num_devices}")
  return shape


def make_mesh(spec: str, devices=None) -> Mesh:
  """The mesh over all devices, in jax.devices() order: a process's devices are consecutive, so each
  process feeds consecutive rows of the batch (what make_array_from_process_local_data expects)."""
  devices = list(devices if devices is not None else jax.devices())
  shape = parse_mesh(spec, len(devices))
  return Mesh(np.asarray(devices).reshape(tuple(shape.values())), tuple(shape))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Rows of a batch split over the data (and fsdp) axes, replicated over model."""
  axes = tuple(a for a in mesh.axis_names if a in BATCH_AXES)
  return NamedSharding(mesh, P(axes if len(axes) > 1 else axes[0]))


def batch_shards(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in mesh.axis_names if a in BATCH_AXES)


def parse_rules(rules: str) -> list[tuple[str, re.Pattern, str]]:
  """A named rule set or 'regex=spec;...' -> [(text, compiled regex, spec)]."""
  text = RULE_SETS.get(rules, rules)
  out = []
  for rule in filter(None, (r.strip() for r in text.split(";"))):
    regex, eq, spec = rule.rpartition("=")
    if not eq or not regex:
      raise ValueError(f"config.sharding.rules={rules!r}: rule {rule!r} is not 'regex=spec' "
                       f"(named sets: {sorted(RULE_SETS)})")
    try:
      out.append((rule, re.compile(regex), spec.strip()))
    except re.error as e:
      raise ValueError(f"config.sharding.rules: regex {regex!r} of rule {rule!r} does not compile: {e}") from None
  return out


def spec_for(path: str, shape: tuple[int, ...], rules, mesh: Mesh) -> P:
  """The PartitionSpec of the array at `path` (see the module docstring)."""
  if not shape:
    return P()
  for text, regex, spec in rules:
    if not regex.search(path):
      continue
    if spec.startswith("@"):
      axis = spec[1:]
      _check_axis(axis, mesh, text)
      size = mesh.shape[axis]
      candidates = [d for d in range(len(shape)) if shape[d] % size == 0 and shape[d] >= size]
      if size == 1 or not candidates or len(shape) < 2:  # vectors and scalars: too small to be worth it
        return P()
      dim = max(candidates, key=lambda d: (shape[d], -d))
      return P(*([None] * dim + [axis]))
    entries = [None if e.strip() in ("None", "") else e.strip() for e in spec.split(",")] if spec else []
    if len(entries) > len(shape):
      raise ValueError(f"sharding rule {text!r}: {path} has shape {shape}, fewer dimensions than the spec")
    for dim, axis in enumerate(entries):
      if axis is None:
        continue
      _check_axis(axis, mesh, text)
      if shape[dim] % mesh.shape[axis]:
        raise ValueError(f"sharding rule {text!r}: dimension {dim} of {path} {shape} is not divisible by "
                         f"mesh axis {axis!r} of size {mesh.shape[axis]}")
    return P(*entries)
  return P()


def _check_axis(axis: str, mesh: Mesh, rule: str):
  if axis not in mesh.axis_names:
    raise ValueError(f"sharding rule {rule!r} names mesh axis {axis!r}, but the mesh has "
                     f"{dict(mesh.shape)} (set config.sharding.mesh, e.g. 'data=-1,{axis}=2')")


def tree_shardings(mesh: Mesh, tree: Any, rules: str) -> Any:
  """A NamedSharding for every array leaf of `tree` (abstract or concrete), by path."""
  parsed = parse_rules(rules)

  def one(path, leaf):
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    return NamedSharding(mesh, spec_for(name, tuple(getattr(leaf, "shape", ())), parsed, mesh))

  return jax.tree_util.tree_map_with_path(one, tree)


def state_shardings(mesh: Mesh, abstract_state: Any, rules: str) -> Any:
  """tree_shardings for a train state, and one log line of what it costs each device."""
  shardings = tree_shardings(mesh, abstract_state, rules)
  leaves = jax.tree.leaves(abstract_state)
  total = sum(x.size * x.dtype.itemsize for x in leaves if hasattr(x, "shape"))
  per_device = sum(x.size * x.dtype.itemsize / _shards(s, mesh)
                   for x, s in zip(leaves, jax.tree.leaves(shardings)) if hasattr(x, "shape"))
  split = sum(1 for s in jax.tree.leaves(shardings) if _shards(s, mesh) > 1)
  logging.info("sharding rules %r on mesh %s: %d of %d state arrays split; %.1f MiB per device of %.1f MiB",
               rules, dict(mesh.shape), split, len(leaves), per_device / 2**20, total / 2**20)
  return shardings


def _shards(sharding: NamedSharding, mesh: Mesh) -> int:
  axes = [a for entry in sharding.spec if entry is not None
          for a in (entry if isinstance(entry, tuple) else (entry,))]
  return math.prod(mesh.shape[a] for a in axes)
