"""Corpus adapters: each turns one corpus layout into manifest rows (lanser_jax/corpora/manifests.py).

`rows(config)` picks the adapter named by `config.adapter` and passes it the other keys, so a
labelling config says e.g. manifest.adapter="iemocap", manifest.root="/data/IEMOCAP_full_release".
`config.label_map` (any adapter) maps the corpus's labels to ours (lanser_jax/corpora/labels.py).
"""

from __future__ import annotations

import os

from lanser_jax.corpora import emobox, emotion, generic, labels, manifests, peoples_speech

ADAPTERS = {
    "peoples_speech": peoples_speech.rows,
    "iemocap": emotion.iemocap_rows,
    "crema_d": emotion.crema_d_rows,
    "condensed_movies": generic.condensed_movies_rows,
    "folder": generic.folder_rows,
    "list": generic.list_rows,
    "emobox": emobox.rows,
}


def rows(config):
  """Rows (and RejectedRows) of the corpus that `config` (a dict or ConfigDict) describes."""
  kwargs = dict(config.to_dict() if hasattr(config, "to_dict") else config)
  name = kwargs.pop("adapter")
  label_map = kwargs.pop("label_map", None)
  if name not in ADAPTERS:
    raise ValueError(f"unknown manifest adapter {name!r}; known: {sorted(ADAPTERS)}")
  if name in ("list", "folder") and not (kwargs.get("root") or kwargs.get("path")):
    raise manifests.CorpusError(f"manifest.root is empty: name the {'list file' if name == 'list' else 'audio folder'}"
                                " (lanser_jax/experiments/labeling/custom.py: path=...)")
  if name == "folder" and not os.path.isdir(kwargs["root"]):
    raise manifests.CorpusError(f"{kwargs['root']}: no such folder (manifest.root)")
  if name == "list":
    kwargs["path"] = kwargs.pop("root", kwargs.get("path"))
  return labels.apply_map(ADAPTERS[name](**kwargs), label_map)
