"""The manifest stage: the corpus (config.manifest, an adapter and its arguments) -> the manifest.

Reads   the corpus, through input_pipeline/adapters
Writes  <workdir>/manifest/manifest.jsonl, errors.jsonl, summary.json (written by process 0 only; the other
        processes wait for summary.json before any later stage)
"""

from __future__ import annotations

import os

from lanser_jax import corpora
from lanser_jax.corpora import labels, manifests
from lanser_jax.utils import progress as progress_lib
from lanser_jax.stages import pieces, stage


class ManifestStage(stage.Stage):
  name = "manifest"
  inputs = ()
  pieced = False  # one manifest, in corpus order: every later stage cuts it into pieces

  def setup(self, config, workdir, log, **models):
    return config, self.out_dir(config, workdir), log

  def run_piece(self, state, piece, num_pieces):
    config, out_dir, log = state
    progress = progress_lib.Progress("manifest", None)
    counts = manifests.write_manifest(os.path.join(out_dir, "manifest.jsonl"),
                                      corpora.rows(config.manifest),
                                      os.path.join(out_dir, "errors.jsonl"), progress)
    progress.close()
    if config.features.label_source == "human":  # labels outside the declared set stop here, before any audio
      path = os.path.join(out_dir, "manifest.jsonl")
      labels.label_names(labels.counts(manifests.read_manifest(path, lenient=True)), config.features.label_names,
                         config.manifest.get("root") or path)
    reasons = {}
    for e in pieces.read_jsonl(os.path.join(out_dir, "errors.jsonl")):
      kind = e["reason"].split(":")[0][:60]
      reasons[kind] = reasons.get(kind, 0) + 1
    summary = dict(stage="manifest", **{"in": counts["written"] + counts["rejected"]}, **counts,
                   reasons=reasons)
    pieces.write_json(os.path.join(out_dir, "summary.json"), summary)
    log(f"[manifest] {counts['written']} rows, {counts['rejected']} rejected {reasons}; "
        f"splits {counts['splits']}, labels {counts['labels']}")


STAGE = ManifestStage()


def manifest_path(workdir: str) -> str:
  """The manifest every later stage reads."""
  return os.path.join(workdir, "manifest", "manifest.jsonl")
