"""The defaults every experiment file starts from, the `:runlocal` shrink, and how an experiment spec
(`lanser_jax/experiments/file.py:key=value,...`) is found and read.

An experiment file's `get_config(arg)` reads its arguments with `parse_arg`, calls `base_config()`, sets what its
setting needs, and ends with `finalize(config, arg)`, which applies `runlocal` (a seconds-long CPU run of the
same code path) when asked. Keys that only exist here are the full list of what `--config.key=value` may
override: an unknown key fails.

A spec's file is a path as given when it exists; else a path that starts with `lanser_jax/` names the file in
the imported package (`resolve_path`), so `--config=lanser_jax/experiments/finetune_iemocap.py:fold=1` means the
same file in a checkout and from an installed wheel, whatever the working directory.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from absl import flags
import ml_collections
from ml_collections import config_flags


# Spellings a boolean argument may take (any case); a bare key (`runlocal`) means true. Anything else is an
# error, so that a typo such as `soft=Ture` cannot silently train on hard labels.
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")


def parse_bool(key: str, value: str) -> bool:
  """The boolean that `key=value` spells; a ValueError naming both for any other spelling."""
  word = value.lower()
  if word == "" or word in TRUE_WORDS:
    return True
  if word in FALSE_WORDS:
    return False
  raise ValueError(f"config argument {key}={value!r}: expected a boolean "
                   f"({'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}, any case; a bare {key} means true)")


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """'runlocal,fraction=0.3,seed=2' -> ConfigDict(runlocal=True, fraction=0.3, seed=2), typed by defaults.

  A value that is not of its default's type (a boolean spelled otherwise, `seed=two`) is an error naming the
  argument and the value, never a silent default.
  """
  out = dict(defaults)
  out.setdefault("runlocal", False)
  for token in filter(None, (arg or "").split(",")):
    key, _, value = token.partition("=")
    if key not in out:
      raise KeyError(f"config argument {key!r} is not one of {sorted(out)}")
    kind = type(out[key])
    if kind is bool:
      out[key] = parse_bool(key, value)
    elif out[key] is None:
      out[key] = value
    else:
      try:
        out[key] = kind(value)
      except ValueError:
        raise ValueError(f"config argument {key}={value!r}: expected {kind.__name__} "
                         f"(as its default {out[key]!r})") from None
  return ml_collections.ConfigDict(out)


def choose(table: dict[str, Any], key: str, argument: str) -> Any:
  """table[key] for an experiment argument (e.g. the platform's batch sizes), else a ValueError naming
  the argument, the value and the choices."""
  if key not in table:
    raise ValueError(f"{argument}={key!r}: expected one of {sorted(table)}")
  return table[key]


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.dir = ""  # a feature folder (lanser_jax/input_pipeline/records.py)
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.test_split = "test"  # "" for none; evaluated once at the end with the best checkpoint
  c.data.stats_file = ""  # default: <data.dir>/stats.json
  c.data.target = "label"  # "label": hard cross-entropy; "scores": soft weak labels (score vectors)
  c.data.crop_frames = 300  # 3 s at a 10 ms hop
  c.data.eval_hop_frames = 150  # sliding-window hop for whole-utterance evaluation
  c.data.label_fraction = 1.0  # stratified nested subset of the training labels (label efficiency)
  c.data.subset_seed = 0
  c.data.num_workers = 2  # Grain worker processes per host
  c.data.worker_buffer_size = 2

  c.model = ml_collections.ConfigDict()
  c.model.name = "resnet50"  # or conformer_s|m, spectrogram_transformer_b16 ...; lanser_jax/models/__init__.py
  c.model.width = 1.0  # ResNets only
  c.model.patch_size = 0  # spectrogram_transformer_* only: square patch side; 0 = the size's default
  c.model.patch_stride = 0  # spectrogram_transformer_* only: 0 = the patch size; AST (Gong et al. 2021) used 10
  c.model.dropout_rate = 0.0
  c.dtype = "float32"  # compute dtype: "bfloat16" keeps float32 parameters

  c.sharding = ml_collections.ConfigDict()  # lanser_jax/engine/sharding.py
  c.sharding.mesh = "data=-1"  # e.g. "data=2,fsdp=4", "data=4,model=2"; -1: the remaining devices
  c.sharding.rules = "replicated"  # replicated | fsdp | tensor | "regex=spec;regex=spec"

  c.batch_size = 64  # global, over all devices and hosts
  c.eval_batch_size = 64
  c.num_train_steps = 10_000

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adamw"  # or "sgd" (with momentum)
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 500
  c.optimizer.schedule = "cosine"  # or "constant" (after warmup)
  c.optimizer.end_lr_factor = 0.0
  c.optimizer.weight_decay = 1e-4  # on kernels only, not on norms and biases
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.grad_clip_norm = 0.0  # 0 disables

  c.label_smoothing = 0.0

  c.specaugment = ml_collections.ConfigDict()
  c.specaugment.enabled = True
  c.specaugment.time_masks = 2
  c.specaugment.max_time_width = 40
  c.specaugment.freq_masks = 2
  c.specaugment.max_freq_width = 8

  c.log_every_steps = 50
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3  # the latest N, plus the best by `best_metric`
  c.best_metric = "ua"  # ua | wa | macro_f1, on data.eval_split

  c.init_from = ""  # a pre-training workdir or checkpoint step folder: backbone restored, new head
  c.init_from_step = "best"  # "best", "latest" or a step number, when init_from is a workdir
  c.freeze_backbone = False  # linear probe
  return c


def runlocal(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Same code path, sized for seconds on one CPU."""
  c.model.name = "tiny"
  c.batch_size = 8
  c.eval_batch_size = 16
  c.num_train_steps = 40
  c.optimizer.warmup_steps = 5
  c.data.crop_frames = 100
  c.data.eval_hop_frames = 50
  c.data.num_workers = 0
  c.log_every_steps = 10
  c.eval_every_steps = 20
  c.checkpoint_every_steps = 20
  return c


def finalize(c: ml_collections.ConfigDict, arg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  if arg.get("runlocal"):
    runlocal(c)
  return c


def set_override(config: ml_collections.ConfigDict, key: str, value: Any, where: str = "the config"):
  """config.a.b = value for the dotted key 'a.b'; an unknown key fails, as --config.a.b would."""
  *parents, leaf = key.split(".")
  target = config
  for p in parents:
    target = target[p]
  if leaf not in target:
    raise KeyError(f"config override {key!r}: {leaf!r} is not a key of {where}")
  target[leaf] = value


PACKAGE = "lanser_jax"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))  # this module sits at the package's root


def resolve_path(path: str) -> str:
  """`path` when it exists (or is absolute); else, for `lanser_jax/<rest>`, that file of the imported package
  when it exists there; else `path` unchanged, for the caller's error to name."""
  if os.path.isabs(path) or os.path.exists(path):
    return path
  head, _, rest = os.path.normpath(path).partition(os.sep)
  if head == PACKAGE and rest and os.path.exists(os.path.join(PACKAGE_DIR, rest)):
    return os.path.join(PACKAGE_DIR, rest)
  return path


def _not_found(path: str, kind: str) -> str:
  where = f" nor in the installed package ({PACKAGE_DIR})" if path.startswith(PACKAGE + "/") else ""
  return (f"{kind} file {path} not found, neither from the working directory ({os.getcwd()}){where}; "
          f"name it by a path that exists or as lanser_jax/experiments/<file>.py")


def load_python_file(path: str, kind: str = "experiment"):
  """Runs a config-style Python file (lanser_jax/experiments/*.py, sweeps) and returns it as a module; the path
  is resolved by `resolve_path`."""
  resolved = resolve_path(path)
  if not os.path.exists(resolved):
    raise FileNotFoundError(_not_found(path, kind))
  module_spec = importlib.util.spec_from_file_location(os.path.basename(resolved)[:-3], resolved)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def load_experiment(spec: str) -> ml_collections.ConfigDict:
  """`path/to/file.py[:args]` -> that file's get_config(args), as --config= resolves it."""
  path, _, arg = spec.partition(":")
  return load_python_file(path).get_config(arg or None)


class _ResolvingParser(flags.ArgumentParser):
  """ml_collections' config-file parser, given the spec with its file resolved by `resolve_path`."""

  def __init__(self, inner: flags.ArgumentParser, kind: str):
    self.inner, self.kind = inner, kind

  def parse(self, spec: str):
    path, sep, arg = spec.partition(":")
    resolved = resolve_path(path)
    if not os.path.exists(resolved):  # ml_collections would defer this to the first use of the config
      raise ValueError(_not_found(path, self.kind))
    return self.inner.parse(resolved + sep + arg)

  def flag_type(self) -> str:
    return self.inner.flag_type()


def define_config_flag(name: str, help_string: str, flag_values: flags.FlagValues,
                       kind: str = "experiment") -> flags.FlagHolder:
  """An ml_collections config-file flag (`--<name>=file.py[:args]`, `--<name>.key=value` overrides, the config
  locked) whose file is found as `load_experiment` finds it."""
  holder = config_flags.DEFINE_config_file(name, None, help_string, flag_values=flag_values, lock_config=True)
  flag_values[name].parser = _ResolvingParser(flag_values[name].parser, kind)
  return holder
