"""The demo's zero-shot and text-only baselines, scored by lanser_jax.tools.baselines on the demo's own outputs.

zero-shot  the pre-trained model (work/pretrain, ekman7 weak labels) classifies each labelled test utterance
           without fine-tuning; its ekman7 prediction is mapped to the six CREMA-D classes
           (taxonomies/mappings.json; 'surprise' has no counterpart).
text only  the pre-training labeler (same kind, model, taxonomy and template) reads the sentence each test
           utterance speaks, i.e. its reference transcript: the demo runs no ASR on the labelled corpus to
           keep within its time budget, so this is text-only with a perfect transcript. The labelled
           sentences are emotionally neutral by design (lanser_jax/demo/corpus.py), so the words carry no
           emotion and this row shows what text alone cannot see.
Both use the restricted argmax (only labels that map to a class can win) and also report the argmax over
all labels (results.json `by_argmax`). Costs seconds: a dozen distinct sentences, one pass over the test split.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from lanser_jax.input_pipeline import records
from lanser_jax.utils import fileio

TAXONOMY, TARGET_SET = "ekman7", "cremad6"


LABELLING_CONFIG = "lanser_jax/experiments/labeling/demo.py"  # the demo's labelling (end_to_end.py runs it)


def labeler_config(kind: str, nli_model: str):
  """The pre-training labelling's labeler config (LABELLING_CONFIG), so both agree."""
  from lanser_jax import config_lib
  spec = f"{LABELLING_CONFIG}:corpus=pretrain,labeler={kind},nli_model={nli_model}"
  return config_lib.load_experiment(spec).labeler


def write_reference_text_labels(manifest_path: str, out_dir: str, labeler, split: str = "test") -> str:
  """Weak labels of the `split` rows' reference text, in the label stage's files (label_names.json,
  labels-00000-of-00001.jsonl), so lanser_jax.tools.baselines.text_only reads them like any labelling."""
  from lanser_jax import labelers
  rows = fileio.read_jsonl(manifest_path)
  rows = [r for r in rows if r.get("split") == split]
  if not rows or any(not r.get("text") for r in rows):
    raise ValueError(f"{manifest_path}: no {split} rows, or {split} rows without text")
  sentences = sorted({r["text"] for r in rows})
  scores = dict(zip(sentences, np.asarray(labeler.score(sentences), np.float32)))
  names = list(labeler.label_names)
  fileio.makedirs(out_dir)
  records.write_json(os.path.join(out_dir, "label_names.json"), names)
  with fileio.atomic_write(os.path.join(out_dir, "labels-00000-of-00001.jsonl")) as f:
    for r in rows:
      s = scores[r["text"]]
      index, _ = labelers.weak_labels(s[None])
      f.write(json.dumps({"utt_id": r["utt_id"], "text": r["text"], "label": names[int(index[0])],
                          "label_index": int(index[0]), "scores": [round(float(x), 6) for x in s]}) + "\n")
  return out_dir


def run(work: str, labeler_kind: str, nli_model: str, labeler=None) -> dict[str, Any]:
  """Scores both baselines into <work>/baselines/<kind>/results.json; returns their test metrics."""
  from lanser_jax.tools import baselines
  from lanser_jax import labelers
  lab_features = os.path.join(work, "labels_labelled", "features")
  if labeler is None:
    labeler = labelers.build_labeler(labeler_config(labeler_kind, nli_model))
  labels_dir = write_reference_text_labels(os.path.join(work, "corpus", "labelled", "manifest.jsonl"),
                                           os.path.join(work, "baselines", "text_only_labels"), labeler)
  out = {}
  for kind, kwargs in (("zero_shot", {"pretrain": os.path.join(work, "pretrain")}),
                       ("text_only", {"labels_dir": labels_dir})):
    result = baselines.run_baseline(kind, os.path.join(work, "baselines", kind), data_dir=lab_features,
                                    target_set=TARGET_SET, taxonomy=TAXONOMY, **kwargs)
    out[kind] = {rule: {k: r[k] for k in ("ua", "wa", "macro_f1", "num_without_prediction")}
                 for rule, r in result["by_argmax"].items()}
  return out


def read_results(work: str) -> dict[str, dict[str, Any]]:
  """{kind: results.json} of the baselines that ran (the report leaves out rows that did not)."""
  out = {}
  for kind in ("zero_shot", "text_only"):
    path = os.path.join(work, "baselines", kind, "results.json")
    if fileio.exists(path):
      out[kind] = fileio.read_json(path)
  return out
