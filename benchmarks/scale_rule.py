r"""Serving's scale rule (engine/value_checks.py SCALE_LIMIT_STD) measured on real speech: for each WAV, its
log-mel's distance from the statistics of the other clips (leave one out), as recorded, 40 dB quieter,
exp(log_mel), in dB and as int16 values read as floats.

  python benchmarks/scale_rule.py /usr/share/pocketsphinx/test/data/librivox/*.wav \
      /usr/share/pocketsphinx/test/data/cards/*.wav --out=benchmarks/results/scale_rule

Prints one row per clip and the range per variant, and writes scale_rule.json under --out.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from lanser_jax.audio import decode
from lanser_jax.audio import log_mel as log_mel_lib
from lanser_jax.engine import value_checks

VARIANTS = {
    "as recorded": lambda x, front: front.one(x),
    "40 dB quieter": lambda x, front: front.one(x * 0.01),
    "exp(log_mel)": lambda x, front: np.exp(front.one(x)),
    "dB (10 log10)": lambda x, front: 10 * np.log10(np.exp(front.one(x))),
    "int16 values as floats": lambda x, front: front.one(x * 32767),
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("wavs", nargs="+")
  parser.add_argument("--out", default="benchmarks/results/scale_rule")
  args = parser.parse_args()
  if len(args.wavs) < 2:
    parser.error("give at least two WAV files (each is measured against the others)")
  front = log_mel_lib.LogMel(log_mel_lib.LogMelOptions())
  clips = [decode.load(p).samples for p in args.wavs]
  mels = [front.one(x) for x in clips]
  rows = []
  for i, (path, x) in enumerate(zip(args.wavs, clips)):
    rest = np.concatenate([m for j, m in enumerate(mels) if j != i])
    mean, std = rest.mean(0), np.maximum(rest.std(0), 1e-3)
    row = {"wav": path, **{name: round(value_checks.scale_distance(f(x, front), mean, std), 3)
                           for name, f in VARIANTS.items()}}
    rows.append(row)
    print(os.path.basename(path), {k: v for k, v in row.items() if k != "wav"})
  ranges = {name: [min(r[name] for r in rows), max(r[name] for r in rows)] for name in VARIANTS}
  for name, (lo, hi) in ranges.items():
    print(f"{name:<24} {lo:.2f} - {hi:.2f}   (warned above {value_checks.SCALE_LIMIT_STD:g})")
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "scale_rule.json"), "w") as f:
    json.dump({"limit_std": value_checks.SCALE_LIMIT_STD, "ranges": ranges, "clips": rows}, f, indent=1)


if __name__ == "__main__":
  main()
