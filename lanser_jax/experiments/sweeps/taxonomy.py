"""Taxonomy sweep: which weak-label taxonomy pre-trains best? pre-training source x taxonomy x label fraction.

  # 1. the pre-training runs, one per (source, taxonomy); each needs its labelling first, in
  #    <data_root>/<source>/<taxonomy name>-conversation-entailment/features (labeler.taxonomy=... there)
  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/taxonomy.py:stage=pretrain,platform=gpu \
      --root=/data/lanser/runs --run
  # 2. fine-tuning from each, and from scratch, on fractions of the human labels; then the table and plot
  python -m lanser_jax.tools.sweep --sweep=lanser_jax/experiments/sweeps/taxonomy.py:platform=gpu --root=/data/lanser/runs \
      (--print | --run | --aggregate)

Arguments (lists are '+'-separated: config arguments cannot hold commas): taxonomies (default
fine40+ekman7; a path ending in .txt adds a taxonomy file, named by its file name), sources (default
peoples_speech; +condensed_movies), fractions (default 0.1+0.3+1.0), stage (finetune | pretrain), and
platform, runlocal, data_root, runs_root as in every sweep. The fine-tuning cells' `pretrained` axis is
'<source>:<taxonomy name>' (or 'none' for from scratch), so --aggregate writes the label-efficiency table
and plot with one line per pre-training taxonomy, averaged over 3 seeds and the 6 dataset/folds.
The from-scratch cells have the same names as label_efficiency.py's: with the same --root they run once.
Defaults: 2 pre-training runs, then (2 taxonomies + scratch) x 3 fractions x 3 seeds x 6 = 162 fine-tuning
runs (see label_efficiency.py for their cost; not measured on an accelerator).
"""

from lanser_jax import config_lib
from lanser_jax.experiments import common as layout

SEEDS = (0, 1, 2)
TEMPLATE, LABELER = "conversation", "entailment"


def _list(value: str) -> list[str]:
  return [v for v in str(value).split("+") if v]


def get_sweep(arg=None):
  arg = layout.sweep_args(arg, taxonomies="fine40+ekman7", sources="peoples_speech",
                                  fractions="0.1+0.3+1.0", stage="finetune")
  taxonomies, sources = _list(arg.taxonomies), _list(arg.sources)
  fractions = [float(f) for f in _list(arg.fractions)]
  names = [layout.taxonomy_name(t) for t in taxonomies]
  if len(set(names)) != len(names):
    raise ValueError(f"taxonomies={arg.taxonomies!r}: two have the same name {names}")
  if arg.stage == "pretrain":
    pretrain = config_lib.load_python_file("lanser_jax/experiments/sweeps/pretrain.py", kind="sweep")
    cells = []
    for source in sources:
      for taxonomy in taxonomies:
        cell = pretrain.pretrain_cell(source, {"taxonomy": taxonomy}, arg)
        cell["axes"]["taxonomy"] = layout.taxonomy_name(taxonomy)
        cells.append(cell)
    return cells
  if arg.stage != "finetune":
    raise ValueError(f"stage={arg.stage!r}: expected finetune or pretrain")
  cells = []
  for dataset, fold, exp_file, _ in layout.dataset_folds():
    for fraction in fractions:
      for seed in SEEDS:
        cells.append(layout.finetune_cell(dataset, fold, exp_file, "none", fraction, seed, arg))
        for source in sources:
          for taxonomy in taxonomies:
            variant = layout.weak_variant(taxonomy, TEMPLATE, LABELER)
            cell = layout.finetune_cell(
                dataset, fold, exp_file, source, fraction, seed, arg,
                extra=f"taxonomy={taxonomy},template={TEMPLATE},labeler={LABELER}", tag=f"taxonomy/{variant}")
            cell["axes"]["pretrained"] = f"{source}:{layout.taxonomy_name(taxonomy)}"
            cells.append(cell)
  return cells
