"""Runs one experiment file: train, evaluate and checkpoint into a workdir.

  lanser-train --config=lanser_jax/experiments/<file>.py[:args] --workdir=DIR [--config.key=value ...]
  (or python -m lanser_jax.main ...)

Running it again on the same workdir resumes from the latest checkpoint. On many hosts, start the same command
on every host with --distributed=auto (TPU pods, Slurm) or --distributed=explicit (see launch/).
"""

import sys

from absl import app, flags, logging
import jax

from lanser_jax import config_lib, train
from lanser_jax.engine import checkpointing, distributed
from lanser_jax.utils import cli, faults

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_CONFIG = config_lib.define_config_flag("config", "Experiment file: lanser_jax/experiments/<file>.py[:args], "
                                        "then --config.key=value overrides.", FLAGS)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.", flag_values=FLAGS)
_DISTRIBUTED = flags.DEFINE_enum("distributed", "off", distributed.MODES,
                                  "off: one process; auto: TPU pod / Slurm detection; explicit: the flags below.",
                                  flag_values=FLAGS)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (explicit mode).",
                                   flag_values=FLAGS)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job (explicit mode).",
                                      flag_values=FLAGS)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's id (explicit mode).", flag_values=FLAGS)
_INIT_TIMEOUT = flags.DEFINE_integer("distributed_timeout_s", 300, "How long to wait for every process.",
                                     flag_values=FLAGS)
_PEER_TIMEOUT = flags.DEFINE_float("peer_timeout_s", 60.0, "A process whose heartbeat stops this long is named "
                                   "and the others stop (multi-process jobs; 0: JAX's own check only).",
                                   flag_values=FLAGS)
flags.mark_flags_as_required(["config", "workdir"], flag_values=FLAGS)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(cli.QuietLibraries())
  distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                         _INIT_TIMEOUT.value, _PEER_TIMEOUT.value)
  distributed.set_safe_note(lambda: checkpointing.saved_note(_WORKDIR.value))
  logging.info("JAX process %d/%d, local devices %s", jax.process_index(), jax.process_count(),
               jax.local_devices())
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (checkpointing.CheckpointError, checkpointing.CheckpointMismatchError) as e:
    # Each says what was found, what is safe and how to go on; its traceback would say nothing more.
    logging.error("%s", e)
    sys.exit(2)
  except Exception as e:
    if faults.describe(e) is not None:  # a fault: say which checkpoints it left (cli.run prints the line)
      faults.note_safe(e, checkpointing.saved_note(_WORKDIR.value, e))
    raise


def run():
  """The `lanser-train` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
