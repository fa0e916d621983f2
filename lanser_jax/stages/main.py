r"""The command line of the offline stages, from a corpus on disk to weakly labelled training records.

  lanser-label --config=lanser_jax/experiments/labeling/local_tiny.py \
      --stage=manifest|asr|label|features|all --workdir=DIR [--num_processes=N --process_index=I] \
      [--jax_distributed] [--config.key=value ...]
  (or python -m lanser_jax.stages.main ...)

Stage     reads                                   writes (all under --workdir)
manifest  the corpus (config.manifest)            manifest/manifest.jsonl, errors.jsonl, summary.json
asr       manifest/manifest.jsonl + audio         asr/transcripts-*.jsonl
label     asr/transcripts-*.jsonl (or, with         labels/labels-*.jsonl, labels/label_names.json
          label.text_source=manifest, the
          manifest's own `text`)
features  manifest + audio (+ labels/ when        <features.dir_name>/<split>-*.array_record shard files +
          features.label_source="weak")           stats sidecars, dataset.json, stats.json
Each of asr, label and features also writes errors-*.jsonl and summary-*.json per piece and, once
all pieces exist, errors.jsonl and summary.json; `all` adds <workdir>/summary.json and errors.jsonl
over the chain of stages, where utterances in = written + rejected. One file per stage in this package
(manifest.py, asr.py, label.py, features.py); chain.py lists them.

Scale-out, static (--runner=local): the same command runs once per process (host or job);
--num_processes/--process_index (else SLURM job-array or Kubernetes Indexed Job variables, else
--jax_distributed for jax.process_index/count) pick the pieces of each stage this process does (pieces.py).
The manifest is written by process 0; the others wait for it.
Scale-out, dynamic (--runner=ray [--ray_address=ADDR]): one driver runs every piece as its own pipeline
asr -> label -> features on a Ray cluster's actors, retrying pieces whose worker died (ray_runner.py,
docs/ray.md); the outputs are the local runner's.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from lanser_jax import config_lib
from lanser_jax.corpora import manifests
from lanser_jax.stages import chain, pieces
from lanser_jax.utils import cli

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_CONFIG = config_lib.define_config_flag("config", "Labelling config: lanser_jax/experiments/labeling/<file>.py"
                                        "[:args], then --config.key=value overrides.", FLAGS, kind="labelling config")
_STAGE = flags.DEFINE_enum("stage", "all", chain.NAMES + ("all",), "Stage to run; all = config.stages.",
                           flag_values=FLAGS)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for every output of the stages.", flag_values=FLAGS)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Processes sharing the work (0: from env).",
                                      flag_values=FLAGS)
_PROCESS_INDEX = flags.DEFINE_integer("process_index", 0, "This process's index in [0, num_processes).",
                                      flag_values=FLAGS)
_JAX_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False,
                                     "Join JAX's distributed runtime and use its process index: the coordinator "
                                     "from LANSER_COORDINATOR, LANSER_NUM_PROCESSES and LANSER_PROCESS_ID when "
                                     "set, else JAX's own cluster detection (TPU pods, Slurm).",
                                     flag_values=FLAGS)
_RUNNER = flags.DEFINE_enum("runner", "local", ("local", "ray"),
                            "local: this process does its share of each stage in turn (with --num_processes, SLURM "
                            "arrays or Kubernetes Indexed Jobs for more); ray: every piece as its own pipeline on a "
                            "Ray cluster (docs/ray.md; needs pip install 'lanser-jax[ray]').", flag_values=FLAGS)
_RAY_ADDRESS = flags.DEFINE_string("ray_address", "", "--runner=ray: the cluster to join (auto, ray://HOST:10001, "
                                   "...); empty: start a local Ray with this machine's CPUs.", flag_values=FLAGS)
_PEER_TIMEOUT = flags.DEFINE_float("peer_timeout_s", 60.0, "With --jax_distributed: a process whose heartbeat "
                                   "stops this long is named and the others stop (0: no watch).",
                                   flag_values=FLAGS)
flags.mark_flags_as_required(["config", "workdir"], flag_values=FLAGS)


def main(argv):
  del argv
  if _CONFIG.value.get("offline", False):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
  if _RUNNER.value == "ray":
    _run_on_ray()
    return
  num_processes, process_index = _NUM_PROCESSES.value, _PROCESS_INDEX.value
  if _JAX_DISTRIBUTED.value:
    import jax
    from lanser_jax.engine import distributed
    # The same peer watch as training (engine/distributed.py): a process that dies is named by the others,
    # which stop instead of waiting up to config.wait_seconds for its pieces.
    mode = "explicit" if os.environ.get("LANSER_COORDINATOR") else "auto"
    distributed.initialize(mode, peer_timeout_s=_PEER_TIMEOUT.value)
    distributed.set_safe_note(lambda: chain.pieces_note(_CONFIG.value, _WORKDIR.value))
    num_processes, process_index = jax.process_count(), jax.process_index()
  process = pieces.resolve_process(num_processes, process_index)
  try:
    chain.run_stages(_CONFIG.value, _WORKDIR.value, _STAGE.value, process)
  except (pieces.NothingSurvived, manifests.CorpusError) as e:  # findings about the corpus: no traceback
    cli.log(f"error: {e}")
    sys.exit(1)


def _run_on_ray():
  """--runner=ray: one driver for the whole job (stages/ray_runner.py); the static split's flags do not apply."""
  from lanser_jax.stages import ray_runner
  if _NUM_PROCESSES.value > 1 or _JAX_DISTRIBUTED.value:
    cli.log("error: --runner=ray schedules the pieces itself; run one driver without --num_processes or "
            "--jax_distributed")
    sys.exit(1)
  try:
    ray_runner.run(_CONFIG.value, _WORKDIR.value, _STAGE.value, _RAY_ADDRESS.value)
  except (ray_runner.RayMissing, pieces.NothingSurvived, manifests.CorpusError) as e:
    cli.log(f"error: {e}")
    sys.exit(1)


def run():
  """The `lanser-label` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
