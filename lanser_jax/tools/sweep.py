r"""Runs, prints or aggregates every cell of a sweep file (lanser_jax/experiments/sweeps/*.py).

  lanser-sweep --sweep=lanser_jax/experiments/sweeps/label_efficiency.py[:args] --root=DIR \
      (--print [--count] | --run [--in_process] | --aggregate) [--only=key=value ...] [--cell=I]
  (or python -m lanser_jax.tools.sweep ...)

A sweep file's `get_sweep(arg)` returns a list of cells, each a dict:
  name       workdir of the cell, relative to --root (unique)
  axes       {axis: value}: what the cell varies (dataset, fold, pretrained, fraction, seed, ...)
  config     a training cell: "lanser_jax/experiments/<file>.py:<args>" (found as config_lib.resolve_path
             says: from the working directory, else in the installed package), run by lanser_jax.main ...
  overrides  ... with these --config.<key>=<value> (optional)
  baseline   or a baseline cell: {"kind": ..., **flags} run by lanser_jax.tools.baselines
  labels     optional {"config": labelling config spec, "workdir": folder}: the labelling that writes the
             cell's data.dir. `--run` runs it (lanser_jax.stages.main, once per distinct labelling, resumable)
             before the cells when a cell's data.dir has no dataset.json; `--print` lists its command first.
             A job-array task never labels: a cell whose feature folder is missing fails, naming the command.
A get_sweep that takes a `root` argument is given --root (e.g. to put the labels it makes under it).
Every cell writes <root>/<name>/results.json; a cell whose results.json exists is done and skipped, so a
sweep is resumed by running it again (an interrupted training cell also resumes from its checkpoint).
A failing cell does not stop the sweep: it is listed with its reason in <root>/sweep_errors.jsonl.

On a cluster the sweep is a job array (launch/slurm_sweep.sbatch): `--print --count` gives the number of
cells N (after --only, finished ones included), and task I of an array 0..N-1 runs `--run --cell=I` (or plain
`--run` with SLURM_ARRAY_TASK_ID=I set), the I-th cell of the sweep file's order (`--print --all` lists them in
that order). The index never depends on which cells are finished, so resubmitting the array is safe: finished
cells exit at once. A cell that restores a pre-training run (config.init_from, a baseline's `pretrain`) whose
workdir has no results.json fails before it starts, naming that run.

--aggregate groups cells by every axis except seed and fold (so each protocol, an axis, has its own
rows) and writes <root>/aggregate.{md,csv}: per row the test-split UA and WA (mean and sample std over seeds
and folds), UA's 95% intervals over seeds (t) and over test utterances (bootstrap), the training clips each
fraction used; the paired comparison of every setting with the baseline of --compare (pre-trained vs scratch
by default: <root>/aggregate_comparisons.csv); the per-fold tables (<root>/aggregate_folds.csv, and per
dataset and protocol in aggregate.md) and <root>/ua_vs_fraction.png (error bars and bands).
lanser_jax/tools/aggregate.py computes them, lanser_jax/tools/stats.py and docs/results.md say how. --run and
--aggregate record the cells in <root>/sweep.json, so `lanser-report ROOT` reports the sweep.
"""

from __future__ import annotations

import inspect
import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from typing import Any, Iterable

from absl import app, flags

from lanser_jax import config_lib
from lanser_jax.tools import aggregate as aggregate_lib
from lanser_jax.utils import cli, faults, fileio

RESULTS = aggregate_lib.RESULTS

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_SWEEP = flags.DEFINE_string("sweep", None, "lanser_jax/experiments/sweeps/<file>.py[:args]", flag_values=FLAGS)
_ROOT = flags.DEFINE_string("root", None, "Every cell's workdir is <root>/<cell name>.", flag_values=FLAGS)
_PRINT = flags.DEFINE_bool("print", False, "Print the command of every unfinished cell.", flag_values=FLAGS)
_RUN = flags.DEFINE_bool("run", False, "Run the unfinished cells, one after another.", flag_values=FLAGS)
_AGGREGATE = flags.DEFINE_bool("aggregate", False, "Write aggregate.{md,csv} and the plot.", flag_values=FLAGS)
_ONLY = flags.DEFINE_multi_string("only", [], "axis=value[,value]; repeatable.", flag_values=FLAGS)
_IN_PROCESS = flags.DEFINE_bool("in_process", False, "--run without a subprocess per cell.", flag_values=FLAGS)
_ALL = flags.DEFINE_bool("all", False, "--print also the finished cells.", flag_values=FLAGS)
_SPLIT = flags.DEFINE_string("split", "test", "--aggregate: which results.json split.", flag_values=FLAGS)
_CELL = flags.DEFINE_integer("cell", None, "--run/--print only the I-th cell (0-based, sweep file order, after "
                             "--only); --run reads SLURM_ARRAY_TASK_ID when this is not given.", flag_values=FLAGS)
_COUNT = flags.DEFINE_bool("count", False, "--print: only the number of cells (array size).", flag_values=FLAGS)
_COMPARE = flags.DEFINE_string("compare", "", "--aggregate: axis=baseline_value to compare every other value of "
                               "that axis with (paired); default pretrained=none, else init=scratch.",
                               flag_values=FLAGS)
flags.mark_flags_as_required(["sweep", "root"], flag_values=FLAGS)
flags.mark_bool_flags_as_mutual_exclusive(["print", "run", "aggregate"], required=True, flag_values=FLAGS)


# ---------------------------------------------------------------------------------------------------
# Loading a sweep.


def load_sweep(spec: str, root: str | None = None) -> list[dict[str, Any]]:
  """`file.py[:args]` -> its get_sweep(args[, root]), checked: unique names, axes, one of config/baseline,
  labels with config and workdir. The file is found as config_lib.resolve_path says."""
  path, _, arg = spec.partition(":")
  get_sweep = config_lib.load_python_file(path, kind="sweep").get_sweep
  takes_root = "root" in inspect.signature(get_sweep).parameters
  cells = list(get_sweep(arg or None, root=root) if takes_root else get_sweep(arg or None))
  names = set()
  for i, cell in enumerate(cells):
    where = f"{path} cell {i} ({cell.get('name')!r})"
    if not cell.get("name") or cell["name"] in names:
      raise ValueError(f"{where}: every cell needs a unique name")
    if os.path.isabs(cell["name"]) or ".." in cell["name"].split("/"):
      raise ValueError(f"{where}: name must be a relative path inside --root")
    if ("config" in cell) == ("baseline" in cell):
      raise ValueError(f"{where}: needs exactly one of 'config' (training) or 'baseline'")
    if not isinstance(cell.get("axes"), dict):
      raise ValueError(f"{where}: 'axes' must be a dict")
    if "labels" in cell and not (isinstance(cell["labels"], dict) and cell["labels"].get("config")
                                 and cell["labels"].get("workdir") and "config" in cell):
      raise ValueError(f"{where}: 'labels' must be {{'config': ..., 'workdir': ...}} of a training cell")
    names.add(cell["name"])
  return cells


def parse_only(only: Iterable[str]) -> dict[str, set[str]]:
  """['fraction=0.1', 'dataset=iemocap,crema_d'] -> {'fraction': {'0.1'}, 'dataset': {...}}."""
  out: dict[str, set[str]] = {}
  for item in only or ():
    key, sep, values = item.partition("=")
    if not sep:
      raise ValueError(f"--only={item!r}: expected key=value[,value...]")
    out.setdefault(key, set()).update(values.split(","))
  return out


def select(cells: list[dict[str, Any]], only: dict[str, set[str]]) -> list[dict[str, Any]]:
  """Cells whose axes match every --only filter (values compared as strings)."""
  if only:
    known = set().union(*(c["axes"] for c in cells)) if cells else set()
    unknown = set(only) - known
    if unknown:
      raise ValueError(f"--only axes {sorted(unknown)} are not axes of this sweep ({sorted(known)})")
  return [c for c in cells if all(str(c["axes"].get(k)) in v for k, v in only.items())]


def is_done(root: str, cell: dict[str, Any]) -> bool:
  return fileio.exists(os.path.join(root, cell["name"], RESULTS))


def pick_cell(cells: list[dict[str, Any]], index: int, source: str = "--cell") -> dict[str, Any]:
  """The index-th cell of the (selected) sweep, in the sweep file's order; a clear error outside 0..N-1."""
  if not 0 <= index < len(cells):
    raise ValueError(f"{source}={index}: this sweep has {len(cells)} cells (0..{len(cells) - 1}) after --only; "
                     f"size the array with --print --count")
  return cells[index]


def array_task_index(env=os.environ) -> int | None:
  """SLURM_ARRAY_TASK_ID as a cell index (None outside a job array)."""
  value = env.get("SLURM_ARRAY_TASK_ID", "")
  if not value:
    return None
  if not value.isdigit():
    raise ValueError(f"SLURM_ARRAY_TASK_ID={value!r}: expected a cell index 0..N-1")
  return int(value)


def load_cell_config(cell: dict[str, Any]):
  """A training cell's experiment config with its overrides applied."""
  config = config_lib.load_experiment(cell["config"])
  for key, value in (cell.get("overrides") or {}).items():
    config_lib.set_override(config, key, value)
  return config


def pretraining_run(cell: dict[str, Any]) -> str | None:
  """The pre-training workdir a cell restores (config.init_from, a baseline's `pretrain`), if it names a
  workdir; a `checkpoints/` or step folder was chosen on purpose and is not checked."""
  path = load_cell_config(cell).init_from if "config" in cell else cell["baseline"].get("pretrain", "")
  if not path:
    return None
  last = os.path.basename(os.path.normpath(path))
  if last in ("checkpoints", "state") or last.isdigit():
    return None
  return path


def check_pretraining_finished(cell: dict[str, Any]):
  """Fails at once, naming the run, instead of fine-tuning from a half-trained (or absent) backbone."""
  run = pretraining_run(cell)
  if run is not None and not fileio.exists(fileio.join(run, RESULTS)):
    raise RuntimeError(f"cell {cell['name']}: its pre-training run {run} is not finished (no {RESULTS} "
                       f"there); run that pre-training first (lanser_jax/experiments/sweeps/pretrain.py, same --root)")


def features_ready(cell: dict[str, Any]) -> bool:
  """Whether a cell's data.dir (its `labels` output) holds a finished feature folder."""
  data_dir = (cell.get("overrides") or {}).get("data.dir", "")
  return bool(data_dir) and fileio.exists(os.path.join(data_dir, "dataset.json"))


def labelling_jobs(cells: list[dict[str, Any]]) -> list[dict[str, str]]:
  """The distinct labellings (cell["labels"]) that some of `cells` still need, in the cells' order."""
  jobs: list[dict[str, str]] = []
  for cell in cells:
    if "labels" in cell and not features_ready(cell) and cell["labels"] not in jobs:
      jobs.append(dict(cell["labels"]))
  return jobs


def labelling_command(job: dict[str, str], python: str = "python") -> list[str]:
  """The argv of one labelling (lanser-label is the same command)."""
  return [python, "-m", "lanser_jax.stages.main", f"--config={job['config']}", f"--workdir={job['workdir']}"]


def _lanser_label(job: dict[str, str]) -> str:
  return "lanser-label " + shlex.join(labelling_command(job)[3:])


class LabellingFailed(RuntimeError):
  """The labelling that a sweep's cells need did not finish; every cell would fail, so the sweep stops."""


def run_labelling(job: dict[str, str], in_process: bool = False, log=print):
  """Runs one labelling (resumable: finished stages and pieces are skipped); its output goes to
  <workdir>/label_log.txt unless in process."""
  log(f"sweep: labelling first: {_lanser_label(job)}")
  t0 = time.time()
  if in_process:
    from lanser_jax.stages import chain, pieces  # pylint: disable=import-outside-toplevel
    try:
      chain.run_stages(config_lib.load_experiment(job["config"]), job["workdir"], "all", (0, 1))
    except (pieces.NothingSurvived, ValueError, FileNotFoundError) as e:
      raise LabellingFailed(f"labelling into {job['workdir']} failed: {e}") from e
  else:
    fileio.makedirs(job["workdir"])
    log_path = os.path.join(job["workdir"], "label_log.txt")
    with fileio.open(log_path, "ab") as f:
      rc = subprocess.call(labelling_command(job, sys.executable), stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
      with fileio.open(log_path, "rb") as f:
        lines = f.read().decode(errors="replace").strip().splitlines()
      raise LabellingFailed(f"labelling into {job['workdir']} failed (exit status {rc}); {log_path} ends: "
                            f"{lines[-1] if lines else '(empty)'}")
  log(f"sweep: labelled in {time.time() - t0:.0f} s")


def check_features_ready(cell: dict[str, Any]):
  """A job-array task does not label (tasks would label at once): a missing feature folder fails its cell."""
  if "labels" in cell and not features_ready(cell):
    raise RuntimeError(f"cell {cell['name']}: its feature folder {cell['overrides']['data.dir']} is missing; "
                       f"label first: {_lanser_label(cell['labels'])} "
                       "(or run the sweep once without --cell)")


# ---------------------------------------------------------------------------------------------------
# Commands.


def _flag_value(value: Any) -> str:
  return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


def command(root: str, cell: dict[str, Any], python: str = "python") -> list[str]:
  """The argv that runs one cell."""
  workdir = os.path.join(root, cell["name"])
  if "config" in cell:
    argv = [python, "-m", "lanser_jax.main", f"--config={cell['config']}", f"--workdir={workdir}"]
    argv += [f"--config.{k}={_flag_value(v)}" for k, v in (cell.get("overrides") or {}).items()]
    return argv
  flags = dict(cell["baseline"])
  argv = [python, "-m", "lanser_jax.tools.baselines", f"--kind={flags.pop('kind')}", f"--workdir={workdir}"]
  return argv + [f"--{k}={_flag_value(v)}" for k, v in flags.items()]



def run_in_process(root: str, cell: dict[str, Any]):
  """Runs one cell in this process (tests, and many small cells on one host without re-importing JAX)."""
  workdir = os.path.join(root, cell["name"])
  if "config" in cell:
    from lanser_jax import train
    train.train_and_evaluate(load_cell_config(cell), workdir)
  else:
    from lanser_jax.tools import baselines
    flags = dict(cell["baseline"])
    baselines.run_baseline(flags.pop("kind"), workdir, **flags)
  if not fileio.exists(os.path.join(workdir, RESULTS)):
    raise RuntimeError(f"{workdir}: finished without writing {RESULTS} (preempted?)")


def run_subprocess(root: str, cell: dict[str, Any]):
  """Runs one cell as `python -m ...` with its output in <workdir>/sweep_log.txt."""
  workdir = os.path.join(root, cell["name"])
  fileio.makedirs(workdir)
  log_path = os.path.join(workdir, "sweep_log.txt")
  # A bucket cannot take the output as it comes: it goes to a local file, copied into the workdir after.
  local_log = (os.path.join(fileio.local_staging_dir("lanser_sweep_"), "sweep_log.txt")
               if fileio.is_url(workdir) else log_path)
  with fileio.open(local_log, "ab") as log:
    rc = subprocess.call(command(root, cell, sys.executable), stdout=log, stderr=subprocess.STDOUT)
  if local_log != log_path:
    fileio.copy(local_log, log_path)
  if rc != 0 or not fileio.exists(os.path.join(workdir, RESULTS)):
    with fileio.open(local_log, "rb") as f:
      f.seek(max(0, fileio.getsize(local_log) - 1500))
      tail = f.read().decode(errors="replace")
    if rc == cli.FAULT_STATUS:  # a fault (full disk, forbidden storage, ...): the cell's last line says it
      last = tail.rstrip().splitlines()[-1].removesuffix(" (--verbose shows the traceback)") if tail.strip() else ""
      raise faults.Fault(f"cell {cell['name']} stopped on a fault (exit status {rc}; its log {log_path} ends: "
                         f"{last})")
    raise RuntimeError(f"exit code {rc}, results.json {'missing' if rc == 0 else 'not written'}; "
                       f"log {log_path} ends:\n{tail}")


def run_cells(root: str, cells: list[dict[str, Any]], in_process: bool = False,
              log=print, label: bool = True) -> dict[str, int]:
  """Runs the unfinished cells in order, after the labelling they need (`label`; job-array tasks pass False);
  failures go to <root>/sweep_errors.jsonl and the sweep goes on."""
  fileio.makedirs(root)
  todo = [c for c in cells if not is_done(root, c)]
  counts = {"cells": len(cells), "skipped": len(cells) - len(todo), "ran": 0, "failed": 0}
  log(f"sweep: {len(cells)} cells, {counts['skipped']} already done, {len(todo)} to run")
  if label:
    for job in labelling_jobs(todo):
      run_labelling(job, in_process, log)
  t0 = time.time()
  for i, cell in enumerate(todo):
    t_cell = time.time()
    try:
      check_pretraining_finished(cell)
      check_features_ready(cell)
      (run_in_process if in_process else run_subprocess)(root, cell)
      counts["ran"] += 1
      status = "done"
    except Exception as e:  # noqa: BLE001 -- one bad cell must not stop a night of runs
      if isinstance(e, faults.Fault) or faults.storage_fault(e) is not None:  # but a fault (full or refusing
        # storage, a process killed for memory) would fail every next cell
        faults.note_safe(e, f"{counts['ran'] + counts['skipped']} of {len(cells)} cells of the sweep are "
                            f"complete; cell {cell['name']} is not")
        raise
      counts["failed"] += 1
      status = f"FAILED ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
      fileio.append_jsonl(os.path.join(root, "sweep_errors.jsonl"), [{
          "name": cell["name"], "axes": cell["axes"], "time": time.time(),
          "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=5)}])
    elapsed = time.time() - t0
    eta = elapsed / (i + 1) * (len(todo) - i - 1)
    log(f"[{i + 1}/{len(todo)}] {cell['name']}: {status} in {time.time() - t_cell:.0f} s; "
        f"elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min")
  log(f"sweep: ran {counts['ran']}, failed {counts['failed']}, skipped {counts['skipped']}"
      + (f"; see {os.path.join(root, 'sweep_errors.jsonl')}" if counts["failed"] else ""))
  return counts


# ---------------------------------------------------------------------------------------------------
# Aggregation (lanser_jax/tools/aggregate.py); the cells are recorded for lanser-report.

SWEEP_RECORD = "sweep.json"


def write_sweep_record(root: str, spec: str, cells: list[dict[str, Any]]):
  """<root>/sweep.json: the sweep file and every cell's name and axes, so `lanser-report ROOT` finds them."""
  fileio.makedirs(root)
  fileio.write_text(os.path.join(root, SWEEP_RECORD), json.dumps(
      {"sweep": spec, "cells": [{"name": c["name"], "axes": c["axes"]} for c in cells]}, indent=1))


def aggregate(root: str, cells: list[dict[str, Any]], split: str = "test",
              averaged: tuple[str, ...] = aggregate_lib.AVERAGED_AXES) -> list[dict[str, Any]]:
  """aggregate.aggregate: one row per group of cells that differ only in the averaged axes."""
  return aggregate_lib.aggregate(root, cells, split, averaged)


# ---------------------------------------------------------------------------------------------------
# Command line.


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if _COUNT.value and not _PRINT.value:
    raise app.UsageError("--count goes with --print")
  if _CELL.value is not None and _AGGREGATE.value:
    raise app.UsageError("--cell goes with --run or --print")
  root = _ROOT.value
  try:
    cells = select(load_sweep(_SWEEP.value, root), parse_only(_ONLY.value))
  except (FileNotFoundError, KeyError, ValueError) as e:  # a sweep file, its arguments or --only: one line
    cli.log(f"error: {e.args[0] if isinstance(e, KeyError) else e}")
    return 2
  if _PRINT.value and _COUNT.value:
    print(len(cells))
    return 0
  index, source = _CELL.value, "--cell"
  try:
    if index is None and _RUN.value:
      index, source = array_task_index(), "SLURM_ARRAY_TASK_ID"
    if index is not None:
      cells = [pick_cell(cells, index, source)]
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  if index is not None:
    print(f"# {source}={index}: cell {cells[0]['name']}", file=sys.stderr)
  if _PRINT.value:
    shown = [c for c in cells if _ALL.value or not is_done(root, c)]
    for job in labelling_jobs(shown):
      print(shlex.join(labelling_command(job)))
    for cell in shown:
      print(shlex.join(command(root, cell)))
    print(f"# {len(shown)} of {len(cells)} cells ({len(cells) - len(shown)} done or hidden)",
          file=sys.stderr)
    return 0
  if _RUN.value:
    if index is None and not _ONLY.value:  # array tasks and parts leave the record to --aggregate
      write_sweep_record(root, _SWEEP.value, cells)
    try:
      counts = run_cells(root, cells, in_process=_IN_PROCESS.value, label=index is None)
    except LabellingFailed as e:
      cli.log(f"error: {e}")
      return 1
    return 1 if counts["failed"] else 0
  split = _SPLIT.value
  write_sweep_record(root, _SWEEP.value, cells)
  try:
    out = aggregate_lib.write_all(root, cells, split, _COMPARE.value)
  except ValueError as e:  # --compare naming no axis, runs of one fold tested on other utterances
    cli.log(f"error: {e}")
    return 2
  print(out["markdown"])
  print("wrote " + ", ".join(out["paths"]))
  return 0


def run():
  """The `lanser-sweep` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
