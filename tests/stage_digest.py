r"""Runs the offline stages on a small generated corpus and prints the sha256 of every file they write, so that
a restructuring can be checked byte for byte against the code before it (not a test: a tool).

  cd CHECKOUT && PYTHONPATH=$PWD python tests/stage_digest.py /tmp/stage_digest > digest.json
  (each checkout with its own copy of this script, into the same output folder emptied in between) then
  diff the two digests.

The corpus is tests/stages/stage_helpers.py's deliberately bad folder (good, resampled, stereo, cropped, silent, short,
empty, garbage and truncated files) with its fake ASR and labeler, in three runs: weak labels over 3 pieces,
weak labels over 4 pieces by 2 processes, and label_source="none" (manifest + features only). The config
record (config.<stage>.json) is listed but not hashed: its key set is what a rename changes.
"""

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stage_helpers  # noqa: E402  (FakeTranscriber, FakeLabeler, make_bad_folder, small_config)

from lanser_jax.stages.chain import run_stages  # noqa: E402


def digest(workdir: str) -> dict[str, str]:
  out = {}
  for d, _, files in os.walk(workdir):
    for f in files:
      rel = os.path.relpath(os.path.join(d, f), workdir)
      with open(os.path.join(d, f), "rb") as fh:
        out[rel] = "config record" if rel.startswith("config.") else hashlib.sha256(fh.read()).hexdigest()
  return out


def main(base: str):
  root = os.path.join(base, "corpus")
  stage_helpers.make_bad_folder(root)
  results = {}
  for name, num_pieces, num_processes, label_source in (("weak3", 3, 1, "weak"), ("weak4x2", 4, 2, "weak"),
                                                        ("none", 2, 1, "none")):
    c = stage_helpers.small_config(root, num_pieces)
    if label_source != "weak":
      c.features.label_source, c.stages = label_source, ("manifest", "features")
    workdir = os.path.join(base, name)
    for i in list(range(num_processes)) + ([0] if num_processes > 1 else []):  # process 0 again: the merge
      run_stages(c, workdir, "all", (i, num_processes), labeler=stage_helpers.FakeLabeler(),
                 transcriber=stage_helpers.FakeTranscriber())
    results[name] = digest(workdir)
  json.dump(results, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
  main(sys.argv[1])
