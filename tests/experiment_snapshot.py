"""Resolves every experiment file (lanser_jax/experiments/*.py) and sweep (lanser_jax/experiments/sweeps/*.py) in many variants
into one JSON-able dict, so that a restructuring of those files can be shown to change no resolved value.

  python tests/experiment_snapshot.py --out=/tmp/before.json            # full dump (configs and cells)
  python tests/experiment_snapshot.py --compare=/tmp/before.json        # exit 1 and list what differs
  python tests/experiment_snapshot.py --compare=/tmp/before.json --renames=renames.json  # renames excepted
  python tests/experiment_snapshot.py --write_digest                    # refresh tests/experiment_digests.json

Every variant is resolved with LANSER_DATA_ROOT unset (the documented default root). A variant that raises
is recorded as its error type and message, so the checks the files make are compared too. The sweeps'
cells (name, axes, config spec, baseline flags) are recorded as well, and every cell's config spec is
resolved like the experiment variants. tests/experiments/test_experiment_snapshot.py compares the digests (one sha256
per file, over all its variants) with the committed ones.

A change that renames things (a model, an experiment file) moves the digests of every variant that names
them. `--renames` takes a JSON list of [regex, replacement] pairs, applied in order to every string (dict keys
included) of the --compare snapshot before comparing: "identical" then shows that the renames listed are the
only differences, and --write_digest may record the new digests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGESTS = os.path.join(ROOT, "tests", "experiment_digests.json")

PRETRAIN_ARGS = ("", "taxonomy=ekman7", "soft=True", "template=i_feel", "template=bare", "template=speaker",
                 "labeler=sentence_encoder", "data_root=/d", "runs_root=/r", "taxonomy=/x/my_labels.txt",
                 "taxonomy=plutchik", "template=shout", "labeler=gpt", "colour=blue")
FINETUNE_IEMOCAP_ARGS = (
    "", "fold=1", "fold=2", "fold=3", "fold=4", "fold=5", "fold=6", "fold=3,fraction=0.1,seed=2",
    "fold=1,fraction=0.5,seed=1", "fold=1,fraction=0.2", "fold=1,pretrained=peoples_speech",
    "fold=1,pretrained=condensed_movies,probe=True", "fold=1,pretrained=peoples_speech,soft=True,runs_root=/r",
    "fold=1,pretrained=peoples_speech,taxonomy=ekman7,template=i_feel,labeler=sentence_encoder",
    "fold=1,probe=True", "protocol=lospk,fold=10", "protocol=lospk,fold=7", "protocol=loso_spkval,fold=2",
    "protocol=loso_spkval,fold=6", "protocol=emobox,fold=2,data_root=/d", "protocol=random,fold=1",
    "fold=1,data_root=/d,runs_root=/r")
FINETUNE_CREMA_ARGS = (
    "", "split=emobox", "split=tfds", "split=by_sentence", "fraction=0.1,seed=0,pretrained=peoples_speech",
    "pretrained=condensed_movies,probe=True,soft=True,runs_root=/r", "probe=True", "fold=1",
    "fraction=0.3,seed=2,data_root=/d")
BACKBONE_PRETRAIN_ARGS = ("", "source=condensed_movies", "source=films", "taxonomy=ekman7,soft=True",
                          "data_root=/d")
BACKBONE_FINETUNE_ARGS = (
    "", "fold=1", "fold=2,size=m", "dataset=crema_d", "dataset=crema_d,fold=2", "dataset=films",
    "fold=1,pretrained=peoples_speech,runs_root=/r", "dataset=crema_d,pretrained=peoples_speech,runs_root=/r",
    "fold=3,fraction=0.1,seed=1,pretrained=condensed_movies,probe=True", "fold=1,protocol=lospk")
EXPERIMENTS = {
    "pretrain_peoples_speech.py": PRETRAIN_ARGS,
    "pretrain_condensed_movies.py": PRETRAIN_ARGS,
    "finetune_iemocap.py": FINETUNE_IEMOCAP_ARGS,
    "finetune_crema_d.py": FINETUNE_CREMA_ARGS,
    "pretrain_conformer.py": BACKBONE_PRETRAIN_ARGS + ("size=m", "size=l"),
    "pretrain_spectrogram_transformer.py": BACKBONE_PRETRAIN_ARGS + ("size=b16", "size=l"),
    "finetune_conformer.py": BACKBONE_FINETUNE_ARGS + ("fold=1,size=s",),
    "finetune_spectrogram_transformer.py": BACKBONE_FINETUNE_ARGS + ("fold=1,size=b16", "fold=1,size=s"),
    "demo_pretrain.py": ("", "soft=True"),
    "demo_finetune.py": ("", "fraction=0.1", "fraction=0.5,seed=2"),
    "synthetic.py": ("", "soft=True"),
}
PLATFORM_SUFFIXES = ("", "platform=cpu", "platform=gpu", "platform=tpu", "platform=tpu,runlocal", "runlocal",
                     "platform=cpu,runlocal", "platform=quantum")
PLATFORM_FILES = {n for n in EXPERIMENTS if not n.startswith(("demo", "synthetic"))}
SWEEP_ARGS = {
    "label_efficiency.py": ("", "platform=tpu,runlocal", "iemocap_protocol=lospk",
                            "iemocap_protocol=emobox,crema_d_split=tfds", "crema_d_split=emobox",
                            "iemocap_protocol=loso_spkval", "data_root=/d,runs_root=/r", "iemocap_protocol=x"),
    "linear_probe.py": ("", "platform=cpu,runlocal", "iemocap_protocol=lospk,crema_d_split=tfds"),
    "weak_label_ablation.py": ("", "platform=tpu", "iemocap_protocol=emobox", "runs_root=/r"),
    "baselines.py": ("", "taxonomy=ekman7", "iemocap_protocol=lospk,crema_d_split=emobox",
                     "data_root=/d,runs_root=/r"),
    "pretrain.py": ("", "ablations=True", "platform=tpu,runlocal,ablations=True", "data_root=/d"),
    "taxonomy.py": ("", "stage=pretrain", "stage=pretrain,sources=peoples_speech+condensed_movies",
                    "taxonomies=fine40+/x/mine.txt,fractions=0.1", "stage=other", "taxonomies=fine40+/y/fine40.txt",
                    "platform=tpu,runlocal,data_root=/d,runs_root=/r"),
    "backbones.py": ("", "platform=tpu,runlocal", "data_root=/d,runs_root=/r"),
}


def _jsonable(value: Any) -> Any:
  """Tuples and lists alike (a config may hold either), everything else as JSON has it."""
  return json.loads(json.dumps(value, default=str))


def _attempt(fn):
  try:
    return {"ok": _jsonable(fn())}
  except Exception as e:  # recorded: the errors are part of what the files do  # noqa: BLE001
    return {"error": f"{type(e).__name__}: {e}"}


def snapshot() -> dict[str, Any]:
  """{"experiments": {spec: config dict or error}, "sweeps": {spec: cells or error}}."""
  os.environ.pop("LANSER_DATA_ROOT", None)
  sys.path.insert(0, ROOT)
  from lanser_jax import config_lib
  from lanser_jax.tools import sweep
  specs = []
  for name, args in EXPERIMENTS.items():
    suffixes = PLATFORM_SUFFIXES if name in PLATFORM_FILES else ("", "runlocal")
    for arg in args:
      for suffix in suffixes:
        specs.append(f"lanser_jax/experiments/{name}:" + ",".join(a for a in (arg, suffix) if a))
  sweeps = {}
  for name, args in SWEEP_ARGS.items():
    for arg in args:
      spec = f"lanser_jax/experiments/sweeps/{name}" + (f":{arg}" if arg else "")
      result = _attempt(lambda: sweep.load_sweep(os.path.join(ROOT, spec)))
      sweeps[spec] = result
      specs += [c["config"] for c in result.get("ok", []) if "config" in c]
  experiments = {}
  for spec in dict.fromkeys(specs):
    path, _, arg = spec.partition(":")
    experiments[spec] = _attempt(lambda: config_lib.load_experiment(os.path.join(ROOT, path) + ":" + arg).to_dict())
  elsewhere = sorted(name for name, module in list(sys.modules.items())
                     if name.split(".")[0] in ("lanser_jax", "input_pipeline")
                     and not os.path.abspath(getattr(module, "__file__", None) or ROOT).startswith(ROOT + os.sep))
  if elsewhere:  # e.g. an editable install of another checkout supplying a module this tree deleted
    raise RuntimeError(f"modules imported from outside {ROOT}: {elsewhere}")
  return {"experiments": experiments, "sweeps": sweeps}


def digests(snap: dict[str, Any]) -> dict[str, dict[str, str]]:
  """One sha256 per file over all its variants (small enough to commit; --compare says which variant)."""
  out: dict[str, dict[str, Any]] = {}
  for kind, entries in snap.items():
    for spec, value in entries.items():
      out.setdefault(kind, {}).setdefault(spec.partition(":")[0], {})[spec] = value
  return {kind: {file: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()
                 for file, v in files.items()} for kind, files in out.items()}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
  """Which variants differ between two snapshots (or digest files), one line each."""
  out = []
  for kind in sorted(set(a) | set(b)):
    ea, eb = a.get(kind, {}), b.get(kind, {})
    for spec in sorted(set(ea) | set(eb)):
      if spec not in ea or spec not in eb:
        out.append(f"{kind} {spec}: only in {'the first' if spec in ea else 'the second'}")
      elif ea[spec] != eb[spec]:
        out.append(f"{kind} {spec}: differs")
  return out


def renamed(value: Any, pairs: list[tuple[str, str]]) -> Any:
  """`value` with every string in it (dict keys included) rewritten by the [regex, replacement] pairs."""
  if isinstance(value, str):
    for pattern, replacement in pairs:
      value = re.sub(pattern, replacement, value)
    return value
  if isinstance(value, dict):
    return {renamed(k, pairs): renamed(v, pairs) for k, v in value.items()}
  if isinstance(value, list):
    return [renamed(v, pairs) for v in value]
  return value


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", help="write the full snapshot here")
  p.add_argument("--compare", help="compare with a full snapshot written by --out")
  p.add_argument("--write_digest", action="store_true", help=f"write {DIGESTS}")
  p.add_argument("--renames", help="JSON list of [regex, replacement] pairs applied to the --compare snapshot")
  a = p.parse_args(argv)
  snap = snapshot()
  n = sum(len(v) for v in snap.values())
  errors = sum("error" in v for entries in snap.values() for v in entries.values())
  print(f"resolved {len(snap['experiments'])} experiment variants and {len(snap['sweeps'])} sweep variants "
        f"({errors} of the {n} raise, as they should)")
  if a.out:
    with open(a.out, "w") as f:
      json.dump(snap, f, sort_keys=True, indent=1)
  if a.write_digest:
    with open(DIGESTS, "w") as f:
      json.dump(digests(snap), f, sort_keys=True, indent=0)
      f.write("\n")
  if a.compare:
    with open(a.compare) as f:
      before = json.load(f)
    if a.renames:
      with open(a.renames) as f:
        before = renamed(before, [tuple(pair) for pair in json.load(f)])
    diff = differences(before, snap)
    print("\n".join(diff) or "identical: every variant resolves to the same config, cells and errors"
          + (" once the renames are applied" if a.renames else ""))
    return 1 if diff else 0
  return 0


if __name__ == "__main__":
  sys.exit(main())
