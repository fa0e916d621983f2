"""The demo's representation analysis: lanser_jax.tools.analysis on its pre-trained and scratch runs over the
labelled corpus's test voices, with probes onto the prosody each utterance was synthesised with.

On real speech the probes can only be checked against measures estimated from the audio (F0 by pyin,
energy, a speaking-rate estimate). The demo's corpus is synthesised, so the eSpeak NG settings behind each
utterance (its emotion's profile plus jitter: rate in words/min, pitch, pitch range, volume and word gap,
lanser_jax/demo/PROSODY.md) are in its manifest row under `prosody`; `--known=prosody` probes them as
ground truth beside the measures.

Runs compared: the weak-label pre-training alone (`pretrain`: it never saw a labelled utterance), and the
pre-trained and from-scratch fine-tunings at the smallest label fraction, where the report's label
efficiency table shows them furthest apart. Utterances: the test voices only (144 by default), which no run
trained on or chose a checkpoint by; pyin is the cost (~0.2-0.4 s per utterance on a busy core), so the
whole step takes about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging

from lanser_jax.utils import fileio

SPLITS = ("test",)
KNOWN = "prosody"  # the manifest key of each utterance's planted eSpeak NG settings (corpus.py)
FIGURES = ("pca.png", "tsne.png", "probes.png")


def write_manifest(corpus_dir: str, out_path: str, splits=SPLITS) -> int:
  """The labelled manifest's rows of `splits`, with audio paths made absolute (the subset lives elsewhere)."""
  rows = [r for r in fileio.read_jsonl(os.path.join(corpus_dir, "manifest.jsonl")) if r.get("split") in splits]
  if not rows:
    raise ValueError(f"{corpus_dir}/manifest.jsonl: no rows of split {list(splits)}")
  for r in rows:
    r["audio"] = fileio.join(fileio.absolute(corpus_dir), r["audio"])
  fileio.write_text(out_path, "".join(json.dumps(r) + "\n" for r in rows))
  return len(rows)


def compared_runs(work: str, fraction: str, seed: int = 0) -> list[tuple[str, str]]:
  """(name, workdir) of the runs the analysis compares: the pre-training and the fine-tunings of one seed
  (cells of lanser_jax/experiments/sweeps/features.py under <work>/finetune)."""
  cell = lambda init: os.path.join(work, "finetune", init, f"frac{float(fraction)}", f"seed{seed}")  # noqa: E731
  return [("pretrain", os.path.join(work, "pretrain")),
          (f"pretrained_{fraction}", cell("weak_labels")), (f"scratch_{fraction}", cell("none"))]


def run(work: str, fraction: str, seed: int = 0, splits=SPLITS) -> dict[str, Any]:
  """Runs the analysis into <work>/analysis (analysis.md/.json, prosody.jsonl, the figures); returns the
  step's record: the command it equals, the utterance count and the probe table."""
  from lanser_jax.tools import analysis
  from lanser_jax.utils import cli
  out = os.path.join(work, "analysis")
  manifest = os.path.join(out, "manifest.jsonl")
  fileio.makedirs(out)
  write_manifest(os.path.join(work, "corpus", "labelled"), manifest, splits)
  runs = compared_runs(work, fraction, seed)
  command = ["-m", "lanser_jax.tools.analysis", *[f"--workdir={n}={d}" for n, d in runs], f"--manifest={manifest}",
             f"--out={out}", f"--seed={seed}", f"--known={KNOWN}"]
  logging.info("$ python %s", " ".join(command))
  cli.call(analysis, command[2:])  # the command itself, in this process (no second JAX start-up)
  result = read_result(work)
  return {"command": command, "num_utterances": result["num_utterances"], "probes": {
      run: {m: p["r2"] for m, p in table.items()} for run, table in result["probes"].items()}}


def read_result(work: str) -> dict[str, Any] | None:
  path = os.path.join(work, "analysis", "analysis.json")
  return fileio.read_json(path) if fileio.exists(path) else None
