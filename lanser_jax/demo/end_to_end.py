"""LanSER end to end on a fresh machine: synthesised speech -> ASR -> weak labels -> pre-training ->
fine-tuning at 10/30/100% of the labels, pre-trained and from scratch, 3 seeds each (the cells of
lanser_jax/experiments/sweeps/features.py) -> zero-shot and text-only baselines
-> representation analysis (prosody probes with ground truth) -> [other backbones] -> a report.

  lanser-demo --workdir=workdirs/demo [--backbones=resnet18_w0.25,conformer_tiny,spectrogram_transformer_tiny]
  (or python -m lanser_jax.demo.end_to_end ...)

Each step runs the project's real commands (the labelling CLI, the trainer with experiment files) and
records `<workdir>/stages/<name>.json` when done (demo/steps.py); a second run on the same workdir reuses
finished steps.
The report is `<workdir>/report/report.md` with its PNG figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from absl import app, flags, logging

from lanser_jax.demo.steps import Steps
from lanser_jax.utils import cli

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/demo", "Where every output of the demo goes.",
                               flag_values=FLAGS)
_NUM_PRETRAIN = flags.DEFINE_integer("num_pretrain", 800, "Utterances in the pre-training corpus (Whisper tiny.en "
                                     "takes ~0.4 s each on 2 cores: the demo's largest cost).", flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the corpora and the pre-training.", flag_values=FLAGS)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the fine-tunings (training seed and label subset): "
                           "the report gives mean ± std, intervals and paired tests over them.", flag_values=FLAGS)
_NLI_MODEL = flags.DEFINE_string("nli_model", "roberta-large-mnli",
                                 "Entailment checkpoint for the weak labels; when it cannot be loaded the "
                                 "sentence-encoder labeler (MiniLM) is used instead, and the report says so.",
                                 flag_values=FLAGS)
_FRACTIONS = flags.DEFINE_list("fractions", ["0.1", "0.3", "1.0"], "Label fractions for fine-tuning.",
                               flag_values=FLAGS)
# The demo's backbones, named for what they run (lanser_jax/experiments/common.py DEMO_BACKBONES): its own
# ResNet-18 at width 0.25 (standing in for the paper's ResNet-50; always run) and the tiny Conformer and
# spectrogram transformer.
BACKBONES = ("resnet18_w0.25", "conformer_tiny", "spectrogram_transformer_tiny")
_BACKBONES = flags.DEFINE_list(
    "backbones", [BACKBONES[0]], f"Backbones to compare, of {', '.join(BACKBONES)}: {BACKBONES[0]} (the demo's "
    "narrow ResNet-18 standing in for the paper's ResNet-50) always runs; each other one is pre-trained on the "
    "same weak labels and fine-tuned with and without it at 10% and 100% of the labels (5 more runs).",
    flag_values=FLAGS)
BACKBONE_FRACTIONS = ("0.1", "1.0")  # the report's backbone table
_HELDOUT_VOICES = 2  # pre-training voices kept out for validation of the weak-label classifier


def run_command(args: list[str]) -> list[str]:
  """Runs one of the project's commands as a user would (`python -m ...` of this interpreter, in the working
  directory; experiment specs name files as lanser_jax/experiments/..., found in the installed package),
  streaming its output."""
  logging.info("$ %s", " ".join(args))
  subprocess.run([sys.executable, *args], check=True)
  return args


def choose_labeler(nli_model: str) -> tuple[str, str]:
  """('entailment', why) when the NLI checkpoint loads, else ('sentence_encoder', why)."""
  from lanser_jax.labelers import hf
  try:
    hf.load_tokenizer(nli_model)
    return "entailment", f"entailment with {nli_model}"
  except Exception as e:  # offline or unknown checkpoint: the documented fallback
    return "sentence_encoder", (f"sentence encoder (all-MiniLM-L6-v2): the NLI checkpoint {nli_model!r} could "
                                f"not be loaded here ({type(e).__name__}: {str(e).splitlines()[0][:160]})")


def chosen_backbones(names: list[str]) -> list[str]:
  """The extra backbones of --backbones (the ResNet always runs), in the order given; unknown names fail."""
  unknown = [n for n in names if n not in BACKBONES]
  if unknown:
    raise app.UsageError(f"--backbones: {unknown} not among {list(BACKBONES)}")
  return [n for n in dict.fromkeys(names) if n != BACKBONES[0]]


def train_run(config_file: str, workdir: str, overrides: dict[str, Any]) -> dict[str, Any]:
  """Trains in this process with an experiment file, as `python -m lanser_jax.main` would."""
  from lanser_jax import config_lib, models, train
  config = config_lib.load_experiment(config_file)
  for key, value in overrides.items():
    config_lib.set_override(config, key, value)
  command = ["-m", "lanser_jax.main", f"--config={config_file}", f"--workdir={workdir}",
             *[f"--config.{k}={v}" for k, v in overrides.items() if k != "data.label_fraction"]]
  logging.info("$ python %s", " ".join(command))
  results = train.train_and_evaluate(config, workdir)
  # Abstract shapes only (no compute): the backbone table says how large each model is.
  num_params = models.count_params(models.model_from_config(config, len(results["label_names"])))["total"]
  return {"command": command, "workdir": workdir, "model": config.model.name, "num_params": num_params,
          **{k: results[k] for k in ("best_step", "train_wall_s") if k in results}}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  import jax
  from lanser_jax.demo import baselines as demo_baselines
  from lanser_jax.demo import corpus, report, representations

  logging.get_absl_handler().addFilter(cli.QuietLibraries())  # it trains in this process, as lanser-train does
  extra_backbones = chosen_backbones(_BACKBONES.value)  # before any work: a typo fails at once
  work = os.path.abspath(_WORKDIR.value)
  os.makedirs(work, exist_ok=True)
  # The six fine-tuning runs compile the same steps: keep compiled code across runs and reruns.
  jax.config.update("jax_compilation_cache_dir", os.path.join(work, "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  steps = Steps(work)
  seed = _SEED.value
  pre_corpus, lab_corpus = os.path.join(work, "corpus", "pretrain"), os.path.join(work, "corpus", "labelled")

  steps.run("1_corpus_pretrain", lambda: {"manifest": corpus.build_pretrain_corpus(
      pre_corpus, _NUM_PRETRAIN.value, seed)})
  steps.run("2_corpus_labelled", lambda: {"manifest": corpus.build_labelled_corpus(lab_corpus, seed)})

  def weak_labels():
    kind, why = choose_labeler(_NLI_MODEL.value)
    logging.info("weak labels: %s", why)
    heldout = "+".join(corpus.speaker_id(v) for v in corpus.DEFAULT_VOICES[-_HELDOUT_VOICES:])
    arg = (f"corpus=pretrain,list={pre_corpus}/manifest.jsonl,labeler={kind},"
           f"nli_model={_NLI_MODEL.value},heldout={heldout}")
    cmd = run_command(["-m", "lanser_jax.stages.main", f"--config=lanser_jax/experiments/labeling/demo.py:{arg}",
                       "--stage=all", f"--workdir={work}/labels_pretrain"])
    return {"labeler": kind, "labeler_note": why, "command": cmd}

  weak = steps.run("3_asr_and_weak_labels", weak_labels)
  steps.run("4_features_labelled", lambda: {"command": run_command([
      "-m", "lanser_jax.stages.main",
      f"--config=lanser_jax/experiments/labeling/demo.py:corpus=labelled,list={lab_corpus}/manifest.jsonl",
      "--stage=all", f"--workdir={work}/labels_labelled"])})

  pre_features = os.path.join(work, "labels_pretrain", "features")
  lab_features = os.path.join(work, "labels_labelled", "features")
  steps.run("5_pretrain", lambda: train_run("lanser_jax/experiments/demo_pretrain.py", os.path.join(work, "pretrain"),
                                             {"data.dir": pre_features, "seed": seed}))

  def finetune(step_prefix: str, root: str, fractions, config_args: str = ""):
    """Pre-trained (from `<root>/pretrain`) and scratch fine-tuning at each fraction, in `<root>/finetune`."""
    for fraction in fractions:
      for init in ("pretrained", "scratch"):
        overrides = {"data.dir": lab_features, "data.label_fraction": float(fraction), "seed": seed,
                     "data.subset_seed": seed}
        if init == "pretrained":
          overrides["init_from"] = os.path.join(root, "pretrain")
        run_dir = os.path.join(root, "finetune", f"{init}_{fraction}")
        steps.run(f"{step_prefix}_{init}_{fraction}",
                   lambda o=overrides, d=run_dir, f=fraction: train_run(
                       f"lanser_jax/experiments/demo_finetune.py:fraction={f}{config_args}", d, o))

  # The main fine-tunings: the cells of the features sweep (pre-trained and scratch x fraction x seed), each
  # a step, recorded for lanser-report (<work>/finetune is a sweep root).
  from lanser_jax.tools import sweep
  spec = (f"lanser_jax/experiments/sweeps/features.py:features={lab_features},pretrain={work}/pretrain,"
          f"pretrain_name=weak_labels,fractions={'+'.join(_FRACTIONS.value)},seeds={'+'.join(_SEEDS.value)}")
  cells = sweep.load_sweep(spec)
  finetune_root = os.path.join(work, "finetune")
  sweep.write_sweep_record(finetune_root, spec, cells)
  for cell in cells:
    a = cell["axes"]
    init = "scratch" if a["pretrained"] == "none" else "pretrained"
    steps.run(f"6_finetune_{init}_{a['fraction']}_seed{a['seed']}", lambda c=cell: train_run(
        c["config"], os.path.join(finetune_root, c["name"]), c["overrides"]))

  # Zero-shot and text-only rows of the report (lanser_jax/demo/baselines.py): seconds.
  steps.run("7_baselines", lambda: {"metrics": demo_baselines.run(work, weak["labeler"], _NLI_MODEL.value)})
  # Embedding maps and prosody probes (planted eSpeak NG settings as ground truth), lanser_jax/demo/
  # representations.py: about a minute, most of it pyin.
  smallest = min(_FRACTIONS.value, key=float)
  steps.run("8_analysis", lambda: representations.run(work, smallest, int(_SEEDS.value[0])))

  # Other backbones (--backbones): the same weak labels, data, steps and crops; tiny sizes.
  for backbone in extra_backbones:
    root = os.path.join(work, "backbones", backbone)
    steps.run(f"9_{backbone}_pretrain", lambda b=backbone, r=root: train_run(
        f"lanser_jax/experiments/demo_pretrain.py:backbone={b}", os.path.join(r, "pretrain"),
        {"data.dir": pre_features, "seed": seed}))
    finetune(f"9_{backbone}_finetune", root, BACKBONE_FRACTIONS, f",backbone={backbone}")
  out = report.write_report(work, steps.records(), weak, cells)
  logging.info("report: %s", out)
  print(f"\nLanSER demo finished. Report: {out}")


def run():
  """The `lanser-demo` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
