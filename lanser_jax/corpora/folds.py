"""How many folds an evaluation protocol has, and the labelling config of each fold when a config asks for
all of them (features.protocol.fold = 0): the chain (lanser_jax/stages/chain.py) then runs the features
stage once per fold, each writing its own feature folder <features.dir_name>_fold<K>.

The folder of one fold holds train, validation and test splits and records its protocol in dataset.json, so
a sweep or a training run takes it as it is. Every fold decodes the audio again: k folds cost k times the
features stage of one.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable

from lanser_jax.corpora import emobox, manifests, protocols, speakers


def num_folds(rows: Callable[[], Iterable], spec: dict[str, Any]) -> int:
  """Folds of features.protocol `spec`; `rows()` gives the manifest rows (only leave_one_speaker_out reads
  them: one fold per speaker)."""
  corpus, name = spec.get("corpus"), spec.get("name")
  if name in speakers.PROTOCOLS:
    return speakers.num_folds(rows() if name == "leave_one_speaker_out" else (), spec)
  if corpus == "emobox":
    return emobox.num_folds(spec.get("emobox_dir", ""), spec.get("dataset", ""))
  if corpus == "iemocap" and name in protocols.IEMOCAP_PROTOCOLS:
    return protocols.IEMOCAP_PROTOCOLS[name]
  if corpus == "crema_d" and name == "emobox":
    return 1
  raise manifests.CorpusError(f"features.protocol {corpus!r}/{name!r}: no such protocol (any corpus with "
                              f"speakers: {list(speakers.PROTOCOLS)}; corpus='emobox'; IEMOCAP: "
                              f"{sorted(protocols.IEMOCAP_PROTOCOLS)}; CREMA-D: emobox)")


def features_name(base: str, fold: int) -> str:
  return f"{base}_fold{fold}"


def fold_configs(config, rows: Callable[[], Iterable]) -> list:
  """[config] when it names one fold (or no protocol); else one copy per fold, with features.protocol.fold
  and features.dir_name set."""
  fc = config.features
  if not fc.get("protocol") or int(fc.protocol.get("fold", 1)) != 0:
    return [config]
  out = []
  for k in range(1, num_folds(rows, fc.protocol.to_dict()) + 1):
    c = copy.deepcopy(config)
    c.features.protocol.fold = k
    c.features.dir_name = features_name(fc.dir_name, k)
    out.append(c)
  return out
