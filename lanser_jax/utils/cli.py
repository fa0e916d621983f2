"""The command-line convention of every lanser-jax command: absl flags in the command's own `FlagValues`, run by
`absl.app.run` (as `python -m ...` and as its `[project.scripts]` entry point), plus the one progress logger.

A command module holds

  FLAGS = flags.FlagValues()
  _WORKDIR = flags.DEFINE_string("workdir", None, "...", flag_values=FLAGS)

  def main(argv):            # absl's main: argv[1:] are the arguments that are not flags
    ...

  def run():                 # the entry point (pyproject.toml [project.scripts]) and `python -m`
    cli.run(main, FLAGS)

Why not absl's global FLAGS: commands import each other's modules (the sweep runs the baselines, the demo runs
the analysis) and a test process imports them all, so flags such as --workdir would be defined twice. Each
command parses its own flags together with absl's (--help, --helpfull, --flagfile, --verbosity, ...), and
--help prints the command's module docstring and its flags.
"""

from __future__ import annotations

import logging as logging_std
import re
import sys
import threading
import traceback
from types import ModuleType
from typing import Callable, NoReturn, Sequence

from absl import app, flags, logging

from lanser_jax.utils import faults

# Exit status of a command stopped by a fault (a full disk, forbidden storage, a dead worker or peer).
FAULT_STATUS = 3
# Libraries whose threads log the same exception the main thread is about to get (Orbax's background saves
# log each failure with its traceback, then raise it again in wait_until_finished).
_LIBRARIES = ("orbax", "tensorstore", "grain", "array_record")


def log(msg: str) -> None:
  """One progress or status line on stderr, flushed at once; stdout stays for a command's results."""
  print(msg, file=sys.stderr, flush=True)


def _fatal(message: str) -> NoReturn:
  sys.stderr.write(f"FATAL Flags parsing error: {message}\nPass --helpshort or --helpfull to see help on flags.\n")
  sys.exit(1)


def _parse(command_flags: flags.FlagValues, argv: Sequence[str]) -> list[str]:
  """Parses argv into the command's flags (absl's own included); a bad flag is one line and exit status 1,
  as absl.app says it."""
  try:
    rest = command_flags(list(argv))
  except flags.Error as e:
    _fatal(str(e))
  except AttributeError as e:
    # ml_collections' answer to --config.<key>=... for a key the config lacks; elsewhere it is a bug, shown whole.
    if not any(re.match(r"--?\w+\.\w", arg) for arg in argv):
      raise
    key = str(e).strip("'\"").replace("\\'", "'").replace("\\n", " ")
    _fatal(f"a --<config>.<key> override names no key of the config: {key}")
  flags.FLAGS.mark_as_parsed()  # absl's flags were parsed as part of the command's (shared Flag objects)
  return rest


class _NoLibraryTracebacks(logging_std.Filter):
  """Without --verbose, a library's log record that carries a traceback is left out: Orbax's and Grain's
  threads log the exception they then hand to the main thread, where the command says in one line what it
  means (with --verbose, both the records and the traceback are shown)."""

  def filter(self, record):
    return not (record.exc_info and any(f"/{lib}/" in record.pathname for lib in _LIBRARIES))


class QuietLibraries(logging_std.Filter):
  """Orbax and Grain log every save and read at INFO (about 30 lines per checkpoint save), which buries a
  training run's own progress lines: keep their warnings, drop the chatter. Orbax also warns at each save
  without metrics (steps saved between evaluations), which is how the training loop saves. Added to absl's
  handler by the commands that train (lanser-train, lanser-demo)."""

  def filter(self, record):
    if "/orbax/" in record.pathname and str(record.msg).startswith("Requested `tracked_metric`"):
      return False
    return record.levelno >= logging_std.WARNING or not any(
        f"/{lib}/" in record.pathname for lib in ("orbax", "grain", "array_record"))


def guarded(main: Callable[[list[str]], int | None], verbose: Callable[[], bool],
            module: str | None = None, where: Callable[[], str | None] = lambda: None,
            exit: Callable[[int], NoReturn] = sys.exit) -> Callable[[list[str]], int | None]:
  """`main`, ending on a fault with one line on stderr (faults.py) and `exit(FAULT_STATUS)` (`run` passes
  `quiet_exit`); other errors, and every error under --verbose, propagate with their traceback. In a
  multi-process job the other processes are told, and an error that follows a peer's death is reported as
  that death (engine/distributed.py)."""

  def call(argv):
    if not verbose():
      logging.get_absl_handler().addFilter(_NoLibraryTracebacks())
      _drop_abandoned_callbacks()
    try:
      return main(argv)
    except (SystemExit, KeyboardInterrupt):
      raise
    except BaseException as e:  # noqa: BLE001 -- a fault is reported, anything else re-raised
      distributed = sys.modules.get("lanser_jax.engine.distributed")
      if distributed is not None and not distributed.watching():
        distributed = None
      if distributed is not None and faults.runtime_error(e):
        distributed.peer_verdict()  # a collective that failed because a peer died: the watch says so, exits
      message = faults.line(e, faults.program_name(module), faults.command_line(module=module), where())
      if message is not None:
        log(message)
      if distributed is not None:  # the peers are told; this process ends without JAX's shutdown barrier
        if message is None or verbose():
          traceback.print_exc()
        described = faults.describe(e)
        distributed.stop_job(described[0] if described else None, FAULT_STATUS if described else 1)
      if message is None or verbose():
        raise
      exit(FAULT_STATUS)

  return call


def _abandoned_callback(value: BaseException | None, tb) -> bool:
  """Whether an error is a completion callback's, sent from a library's thread to a closed event loop."""
  return (isinstance(value, RuntimeError) and str(value) == "Event loop is closed" and tb is not None
          and tb.tb_frame.f_code.co_name == "call_soon_threadsafe" and "asyncio" in tb.tb_frame.f_code.co_filename)


def _drop_abandoned_callbacks() -> None:
  """Leaves out the errors of completion callbacks sent to an event loop that is already closed.

  Orbax awaits TensorStore's writes in an event loop of its own, which it closes as soon as one write fails;
  the other writes then finish on TensorStore's threads and hand their result to the closed loop
  (`loop.call_soon_threadsafe`), and TensorStore reports each `RuntimeError: Event loop is closed` through
  sys.unraisablehook (PyErr_WriteUnraisable; sys.excepthook, which its PyErr_Print calls, is filtered
  alike): dozens of bare tracebacks around the fault's line, in some runs and not others. They follow an
  error that the command reports itself, so without --verbose they are dropped; every other error reaches
  the hooks as before. Installed once."""
  if getattr(sys.excepthook, "drops_abandoned_callbacks", False):
    return
  excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

  def on_exception(kind, value, tb):
    if not _abandoned_callback(value, tb):
      excepthook(kind, value, tb)

  def on_unraisable(unraisable):
    if not _abandoned_callback(unraisable.exc_value, unraisable.exc_traceback):
      unraisablehook(unraisable)

  on_exception.drops_abandoned_callbacks = True
  sys.excepthook, sys.unraisablehook = on_exception, on_unraisable


def quiet_exit(status: int) -> NoReturn:
  """Ends the process after a fault's line with `status` by the interpreter's usual exit, less what threads
  and finalizers print while it is torn down.

  The usual exit is kept (not os._exit): it waits for Orbax's background finalisation of a checkpoint still
  being written, stops Grain's worker processes (multiprocessing's exit handler) and flushes the logs. What
  a library thread or finalizer raises during it (a thread still holding work for the failed save) follows
  the fault the line names, so from here on uncaught errors of threads (`threading.excepthook`), errors in
  finalizers (`sys.unraisablehook`) and asyncio's "exception was never retrieved" records are dropped. With
  --verbose nothing is dropped (the exception goes on with its traceback instead of reaching here)."""
  sys.stdout.flush()
  sys.stderr.flush()
  threading.excepthook = lambda args: None
  sys.unraisablehook = lambda unraisable: None
  logging_std.getLogger("asyncio").disabled = True
  sys.exit(status)


def run(main: Callable[[list[str]], int | None], command_flags: flags.FlagValues,
        argv: Sequence[str] | None = None) -> NoReturn:
  """absl.app.run(main) over the command's own flags and absl's; exits with main's return value, or on a
  fault with one line (`guarded`).

  The two flag sets share their Flag objects both ways: the command's parser knows absl's flags, and absl's
  global FLAGS holds the command's, registered as the main program's, which is what absl's --help lists.
  """
  app.define_help_flags()
  if "verbose" not in command_flags:
    flags.DEFINE_bool("verbose", False, "On a fault (full disk, forbidden storage, dead worker or peer), print "
                      "the whole traceback instead of one line.", flag_values=command_flags)
  absl_names = [name for name in flags.FLAGS if flags.FLAGS[name].name == name]
  program = sys.argv[0]
  for name in list(command_flags):
    flag = command_flags[name]
    if name == flag.name:  # each flag once (a short name is a second key of the same flag)
      flags.FLAGS[name] = flag
      flags.FLAGS.register_flag_by_module(program, flag)
  for name in absl_names:
    if name not in command_flags:
      command_flags[name] = flags.FLAGS[name]
  # absl's --help prints __main__'s docstring: under `python -m` that is the command's module, but an entry
  # point's __main__ is the small script pip writes, which has none.
  main_module = sys.modules["__main__"]
  if not getattr(main_module, "__doc__", None):
    main_module.__doc__ = sys.modules[main.__module__].__doc__
  module = main.__module__
  if module == "__main__":  # python -m lanser_jax.<module>
    module = getattr(sys.modules["__main__"].__spec__, "name", None)
  where = lambda: next((command_flags[n].value for n in ("output", "workdir", "root")
                        if n in command_flags and command_flags[n].value), None)
  app.run(guarded(main, lambda: command_flags["verbose"].value, module, where, quiet_exit),
          argv=None if argv is None else list(argv),
          flags_parser=lambda args: _parse(command_flags, args))


def call(command: ModuleType, argv: Sequence[str]) -> int | None:
  """Runs a command module (its `FLAGS` and `main`) in this process, flags from `argv` (no program name) and
  the others at their defaults, and returns main's value: for tests, and for a command that runs another
  without a second process (the demo runs the analysis), as absl.app.run runs once per process. (A config
  flag's --config.key=value overrides are read from the process's own command line: they need `run`.)"""
  command.FLAGS.unparse_flags()
  return command.main(command.FLAGS([command.__name__, *argv]))
