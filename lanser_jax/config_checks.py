"""The allowed range or choice list of every numeric and enumerated config key, checked before any work.

Two tables, `TRAINING` here (lanser_jax/config_lib.py's base_config, checked by `check_training`) and
lanser_jax/stages/defaults.py's `CHECKS` (the labelling config, checked by `defaults.check`), each a list of
`Check`s: a key, the allowed values in words, and the test. Cross-field checks (masks within the crop and the
mel bins, batches divisible by the device count) name what they compare with; those that need facts about the
run (the device count, the features' mel bins) are given them as `context` and are skipped where the caller
does not know them yet.

A failure is one line per wrong key: `config.<key>=<value>: allowed <range>` and, for a cross-field check, what
it was compared with. The same tables make the docs page's tables (`markdown_table`;
`python -m lanser_jax.tools.config_tables` prints them; tests/test_config_checks.py compares them with
docs/config_checks.md), so the documented ranges are the checked ones.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Mapping, Sequence

METRICS = ("wa", "ua", "macro_f1")  # what evaluation produces (engine/metrics.py SCALARS; a test compares)


class ConfigError(ValueError):
  """One or more config values outside their documented range; one line per key."""


@dataclasses.dataclass(frozen=True)
class Check:
  key: str  # dotted, e.g. "optimizer.learning_rate"
  allowed: str  # in words, for the message and the docs table
  test: Callable[[Any, Any, Mapping[str, Any]], str | None]  # (value, config, context) -> None or a problem
  needs: tuple[str, ...] = ()  # context keys the test needs; skipped while one is unknown


def is_number(v: Any, integer: bool) -> bool:
  if isinstance(v, bool) or not isinstance(v, numbers.Real):
    return False
  return float(v).is_integer() if integer else math.isfinite(float(v))


def between(key: str, lo: float | None = None, hi: float | None = None, *, integer: bool = False,
            lo_open: bool = False, hi_open: bool = False) -> Check:
  """A number in [lo, hi] (open ends as asked; None: unbounded). Floats must be finite."""
  left = "" if lo is None else (f"> {lo:g}" if lo_open else f">= {lo:g}")
  right = "" if hi is None else (f"< {hi:g}" if hi_open else f"<= {hi:g}")
  if lo is not None and hi is not None:
    words = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
  else:
    words = left or right or "any"
  words = ("an integer " if integer else "a finite number ") + words

  def test(v, config, context):
    if not is_number(v, integer):
      return "not " + ("an integer" if integer else "a finite number")
    if lo is not None and (v <= lo if lo_open else v < lo):
      return ""
    if hi is not None and (v >= hi if hi_open else v > hi):
      return ""
    return None

  return Check(key, words, test)


def one_of(key: str, choices: Sequence[Any]) -> Check:
  return Check(key, "one of " + ", ".join(repr(c) for c in choices),
               lambda v, config, context: None if v in tuple(choices) else "")


def boolean(key: str) -> Check:
  return Check(key, "True or False", lambda v, config, context: None if isinstance(v, bool) else "")


def cross(key: str, allowed: str, test: Callable[[Any, Any, Mapping[str, Any]], str | None],
          needs: tuple[str, ...] = ()) -> Check:
  return Check(key, allowed, test, needs)


def _get(config: Any, key: str) -> Any:
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def _has(config: Any, key: str) -> bool:
  node = config
  for part in key.split("."):
    try:
      if part not in node:
        return False
    except TypeError:
      return False
    node = node[part]
  return True


# ---------------------------------------------------------------------------------------------------
# Training (config_lib.base_config).


def _divisible(name: str):
  def test(v, config, context):
    devices, processes = context["device_count"], context.get("process_count", 1)
    if v % devices:
      return f"not divisible by the {devices} devices"
    if v % processes:
      return f"not divisible by the {processes} processes"
    return None
  return test


def _model_names() -> tuple[str, ...]:
  from lanser_jax import models  # here: the labelling command and the docs need no model code
  return models.ARCHITECTURES


def _within(other: str, plus: int = 0):
  def test(v, config, context):
    bound = _get(config, other) + plus
    return None if v <= bound else f"config.{other} is {_get(config, other)}"
  return test


def _init_from_step(v, config, context):
  if v in ("best", "latest") or (is_number(v, True) and v >= 0):
    return None
  if isinstance(v, str) and v.isdigit():
    return None
  return ""


TRAINING: tuple[Check, ...] = (
    between("seed", 0, integer=True),
    between("data.crop_frames", 1, integer=True),
    between("data.eval_hop_frames", 1, integer=True),
    cross("data.eval_hop_frames", "<= data.crop_frames (windows leave no frame out)", _within("data.crop_frames")),
    one_of("data.target", ("label", "scores")),
    between("data.label_fraction", 0, 1, lo_open=True),
    between("data.subset_seed", 0, integer=True),
    between("data.num_workers", 0, integer=True),
    between("data.worker_buffer_size", 1, integer=True),
    cross("model.name", "a name of lanser_jax/models (python -m lanser_jax.models lists them)",
          lambda v, config, context: None if v in _model_names() else ""),
    between("model.width", 0, lo_open=True),
    between("model.patch_size", 0, integer=True),
    between("model.patch_stride", 0, integer=True),
    between("model.dropout_rate", 0, 1, hi_open=True),
    one_of("dtype", ("float32", "bfloat16")),
    between("batch_size", 1, integer=True),
    cross("batch_size", "divisible by the device count and the process count", _divisible("batch_size"),
          ("device_count",)),
    between("eval_batch_size", 1, integer=True),
    cross("eval_batch_size", "divisible by the device count and the process count",
          _divisible("eval_batch_size"), ("device_count",)),
    between("num_train_steps", 1, integer=True),
    one_of("optimizer.name", ("adamw", "sgd")),
    between("optimizer.learning_rate", 0, lo_open=True),
    between("optimizer.warmup_steps", 0, integer=True),
    one_of("optimizer.schedule", ("cosine", "constant")),
    between("optimizer.end_lr_factor", 0, 1),
    between("optimizer.weight_decay", 0),
    between("optimizer.momentum", 0, 1, hi_open=True),
    boolean("optimizer.nesterov"),
    between("optimizer.b1", 0, 1, hi_open=True),
    between("optimizer.b2", 0, 1, hi_open=True),
    between("optimizer.grad_clip_norm", 0),
    between("label_smoothing", 0, 1, hi_open=True),
    boolean("specaugment.enabled"),
    between("specaugment.time_masks", 0, integer=True),
    between("specaugment.max_time_width", 0, integer=True),
    cross("specaugment.max_time_width", "<= data.crop_frames (a mask within the crop)",
          _within("data.crop_frames")),
    between("specaugment.freq_masks", 0, integer=True),
    between("specaugment.max_freq_width", 0, integer=True),
    cross("specaugment.max_freq_width", "< the features' mel bins (a mask within the spectrogram)",
          lambda v, config, context: None if v < context["mel_bins"]
          else f"the features have {context['mel_bins']} mel bins", ("mel_bins",)),
    between("log_every_steps", 1, integer=True),
    between("eval_every_steps", 1, integer=True),
    between("checkpoint_every_steps", 1, integer=True),
    between("keep_checkpoints", 1, integer=True),
    one_of("best_metric", METRICS),
    cross("init_from_step", "'best', 'latest' or a step number >= 0", _init_from_step),
    boolean("freeze_backbone"),
)


# ---------------------------------------------------------------------------------------------------
# Running the checks, and the docs tables.


def problems(checks: Sequence[Check], config: Any, context: Mapping[str, Any] | None = None) -> list[str]:
  """One line per failing check (keys absent from `config` and checks whose context is unknown are skipped;
  a key that already failed its range is not cross-checked)."""
  context = dict(context or {})
  lines, failed = [], set()
  for check in checks:
    if check.key in failed or not _has(config, check.key) or any(context.get(n) is None for n in check.needs):
      continue
    value = _get(config, check.key)
    try:
      detail = check.test(value, config, context)
    except (TypeError, ValueError) as e:  # a value of the wrong type for the comparison
      detail = f"{type(e).__name__}: {e}"
    if detail is not None:
      failed.add(check.key)
      lines.append(f"config.{check.key}={value!r}: allowed {check.allowed}" + (f" ({detail})" if detail else ""))
  return lines


def raise_problems(lines: list[str], what: str):
  if lines:
    more = f" (and {len(lines) - 1} more below)" if len(lines) > 1 else ""
    raise ConfigError(lines[0] + more + "".join("\n" + line for line in lines[1:])
                      + f"\n(every range: docs/config_checks.md; set the key with --config.<key>=... in the {what})")


def check_training(config: Any, **context: Any):
  """Raises ConfigError listing every training key outside its range. Context: device_count, process_count,
  mel_bins (each optional: its cross-field checks are skipped while unknown)."""
  raise_problems(problems(TRAINING, config, context), "lanser-train command")


def markdown_table(checks: Sequence[Check], defaults: Any) -> str:
  """The docs table of `checks`: key, allowed values, default."""
  rows = ["| key | allowed | default |", "|---|---|---|"]
  for check in checks:
    default = repr(_get(defaults, check.key)) if _has(defaults, check.key) else ""
    allowed = check.allowed.replace("|", "\\|")
    rows.append(f"| `{check.key}` | {allowed} | `{default}` |")
  return "\n".join(rows)
