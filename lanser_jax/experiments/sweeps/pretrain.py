"""Pre-training runs: People's Speech and Condensed Movies (2 cells), plus the weak-label ablations
(ablations=True: 5 more People's Speech runs, one setting changed each).

  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/pretrain.py:platform=tpu --root=/data/lanser/runs --run
  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/pretrain.py:platform=gpu,ablations=True \
      --root=/data/lanser/runs --print

Cell names are the workdirs the fine-tuning configs restore from (experiment_layout.pretrain_run_name), so
use the --root that the fine-tuning sweeps get as runs_root. Each cell needs its labelling first:
<data_root>/<source>/<taxonomy>-<template>-<labeler>/features (see lanser_jax/experiments/common.py).
Arguments: platform, runlocal, data_root, ablations.
Expected cost: ~5 h (People's Speech) and ~1.5 h (Condensed Movies) per run on one 8-GPU node,
an estimate, not measured.
"""


from lanser_jax import config_lib
from lanser_jax.experiments import common as layout

BASE = dict(taxonomy="fine40", template="conversation", labeler="entailment", soft=False)
# One setting changed each (the paper's weak-label ablations; the particular alternatives are ours).
ABLATIONS = (
    {"taxonomy": "ekman7"},
    {"soft": True},
    {"template": "speaker"},
    {"template": "i_feel"},
    {"labeler": "sentence_encoder"},
)
FILES = {"peoples_speech": "lanser_jax/experiments/pretrain_peoples_speech.py",
         "condensed_movies": "lanser_jax/experiments/pretrain_condensed_movies.py"}


def pretrain_cell(source, setting, arg):
  s = dict(BASE, **setting)
  variant = layout.weak_variant(s["taxonomy"], s["template"], s["labeler"])
  spec = (f"{FILES[source]}:taxonomy={s['taxonomy']},template={s['template']},labeler={s['labeler']},"
          f"soft={s['soft']},platform={arg.platform},data_root={arg.data_root}"
          + (",runlocal" if arg.runlocal else ""))
  return {"name": layout.pretrain_run_name(source, variant, s["soft"]), "config": spec,
          "axes": {"stage": "pretrain", "source": source, "variant": variant,
                   "target": "soft" if s["soft"] else "hard"}}


def get_sweep(arg=None):
  arg = config_lib.parse_arg(arg, platform="gpu", data_root=layout.data_root(), ablations=False)
  cells = [pretrain_cell(source, {}, arg) for source in FILES]
  if arg.ablations:
    cells += [pretrain_cell("peoples_speech", setting, arg) for setting in ABLATIONS]
  return cells
