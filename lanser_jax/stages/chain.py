"""The list of offline stages and the chain that runs one of them or config.stages in order on this
process, merging each stage's pieces and writing the end-to-end summary (utterances in = written + rejected).

Adding a stage: a module with a `stage.Stage` subclass and its `STAGE`, and one entry in `STAGES`.
"""

from __future__ import annotations

import json
import os
import re
import time

from lanser_jax.corpora import folds
from lanser_jax.utils import fileio
from lanser_jax.utils.cli import log
from lanser_jax.stages import defaults, features, manifest, pieces, stage
from lanser_jax.stages import asr
from lanser_jax.stages import label

STAGES: tuple[stage.Stage, ...] = (manifest.STAGE, asr.STAGE, label.STAGE, features.STAGE)
BY_NAME = {s.name: s for s in STAGES}
NAMES = tuple(BY_NAME)


def _wait(path: str, seconds: float):
  deadline = time.monotonic() + seconds
  while not fileio.exists(path):
    if time.monotonic() > deadline:
      raise FileNotFoundError(f"{path}: not there after {seconds} s; run the manifest stage first")
    time.sleep(10)
  return pieces.read_json(path)


def check_num_pieces(config, workdir: str):
  """Refuses, before any work, a workdir whose stages were cut into another number of pieces: its piece files
  would be recomputed under new names and then mix with the old ones (config.num_pieces is fixed for a
  workdir)."""
  for s in STAGES:
    if not s.pieced:
      continue
    for path in fileio.glob(os.path.join(s.out_dir(config, workdir), "*-?????-of-?????.*")):
      match = _PIECE_RE.search(os.path.basename(path))
      if match and int(match["count"]) != config.num_pieces:
        raise ValueError(f"config.num_pieces={config.num_pieces}, but {path} is one of {int(match['count'])} "
                         f"pieces: a workdir keeps the number of pieces it was started with; rerun with "
                         f"--config.num_pieces={int(match['count'])}, or use a new workdir")


_PIECE_RE = re.compile(r"-\d{5}-of-(?P<count>\d{5})\.")


def pieces_note(config, workdir: str) -> str:
  """What a stopped labelling job has kept: the complete pieces of each pieced stage started in `workdir`
  ("complete pieces, which a rerun skips: asr 4 of 4, features 1 of 4"). Never raises."""
  try:
    done = []
    for s in STAGES:
      stage_dir = s.out_dir(config, workdir)
      if s.pieced and fileio.isdir(stage_dir):
        count = sum(pieces.piece_done(stage_dir, j, config.num_pieces) for j in range(config.num_pieces))
        done.append(f"{s.name} {count} of {config.num_pieces}")
    return f"complete pieces, which a rerun skips: {', '.join(done)}" if done else "no stage piece is complete"
  except Exception:  # noqa: BLE001 -- the note is a courtesy; the storage may not list
    return ""


def prepare(config, workdir: str, stage_name: str, record: bool = True) -> list[str]:
  """Checks the config and the workdir before any work, creates the workdir and (`record`: on one process)
  writes the config record config.<stage_name>.json; returns the stages to run, in order."""
  defaults.check(config)
  todo = list(config.stages) if stage_name == "all" else [stage_name]
  unknown = [n for n in todo if n not in BY_NAME]
  if unknown:
    raise ValueError(f"unknown stage(s) {unknown}; the stages are {list(NAMES)}")
  check_num_pieces(config, workdir)
  fileio.makedirs(workdir)
  if record:
    pieces.write_json(os.path.join(workdir, f"config.{stage_name}.json"), json.loads(config.to_json()))
  return todo


def run_stages(config, workdir: str, stage_name: str, process: tuple[int, int], **models) -> dict | None:
  """Runs one stage or config.stages in order; returns the end-to-end summary after `all`. `models`
  (labeler=, transcriber=) are prebuilt models handed to the stages (tests pass fakes)."""
  todo = prepare(config, workdir, stage_name, record=process[0] == 0)
  for name, config in _steps(config, todo, workdir, process):  # noqa: B020 -- one config per fold
    s = BY_NAME[name]
    log(f"=== stage {name} (process {process[0]} of {process[1]}) ===")
    if name != manifest.STAGE.name and process[0] != 0:
      _wait(os.path.join(workdir, "manifest", "summary.json"), config.wait_seconds)
    state = s.setup(config, workdir, log, **models)
    stage.run_pieces(s, state, config, workdir, process, log)
    if s.pieced and process[0] == 0:
      if pieces.wait_for_pieces(s.out_dir(config, workdir), config.num_pieces, config.wait_seconds, log=log):
        finish_stage(s, state, config, workdir, stage_name, log)
  if stage_name == "all" and process[0] == 0:
    summary = end_to_end_summary(config, workdir, todo)
    if summary is not None and summary["in"] and not summary["written"]:
      raise pieces.NothingSurvived(f"0 of {summary['in']} utterances survived the stages; reasons in "
                                   f"{os.path.join(workdir, 'errors.jsonl')}")
    return summary
  return None


def finish_stage(s: stage.Stage, state, config, workdir: str, stage_name: str, log=log) -> dict:
  """Once every piece of a pieced stage is complete: the stage's own whole-stage outputs (`finish`), then its
  merged errors.jsonl and summary.json, with the cropping and no-split notes; refuses a lone stage that let
  no utterance through. Both runners call it (the Ray runner, ray_runner.py, from its driver)."""
  stage_dir = s.out_dir(config, workdir)
  s.finish(state)
  merged = pieces.merge_stage(stage_dir, config.num_pieces)
  log(f"[{s.name}] in {merged['in']} = written {merged['written']} + rejected {merged['rejected']} "
      f"{merged['reasons']}")
  for note in (pieces.crop_note(s.name, merged, config.audio.max_seconds), features.no_split_note(merged)):
    if note:
      log(note)
  if stage_name != "all" and merged["in"] and not merged["written"]:
    raise pieces.NothingSurvived(f"0 of {merged['in']} utterances survived the {s.name} stage; reasons "
                                 f"in {os.path.join(stage_dir, 'errors.jsonl')}")
  return merged


def stage_configs(config, name: str, workdir: str) -> list:
  """The configs a stage runs under: the features stage one per fold when features.protocol.fold is 0 (every
  fold, lanser_jax/corpora/folds.py), each naming its own feature folder; every other stage just `config`.
  Reads the manifest for the folds, so it runs after the manifest stage."""
  if name != features.STAGE.name:
    return [config]
  rows = lambda: pieces.Manifest(manifest.manifest_path(workdir)).piece(0, 1)  # noqa: E731
  return folds.fold_configs(config, rows)


def _steps(config, todo, workdir: str, process: tuple[int, int]):
  """(stage name, config) in order: the features stage once per fold when features.protocol.fold is 0
  (every fold, lanser_jax/corpora/folds.py), each fold's config naming its own feature folder."""
  for name in todo:
    if name != features.STAGE.name:
      yield name, config
      continue
    if process[0] != 0:
      _wait(os.path.join(workdir, "manifest", "summary.json"), config.wait_seconds)
    configs = stage_configs(config, name, workdir)
    for fold_config in configs:
      if len(configs) > 1:
        log(f"--- fold {fold_config.features.protocol.fold} of {len(configs)}: {fold_config.features.dir_name}")
      yield name, fold_config


def end_to_end_summary(config, workdir: str, todo) -> dict | None:
  """Utterances in (corpus entries) = written (training records) + rejected (by any stage)."""
  # With human labels the features come straight from the manifest; asr/label are side products.
  side = ("asr", "label") if "features" in todo and config.features.label_source != "weak" else ()
  chain = [s for s in todo if s not in side]
  paths = {s: os.path.join(BY_NAME[s].out_dir(config, workdir), "summary.json") for s in chain}
  missing = [p for p in paths.values() if not fileio.exists(p)]
  if missing:
    log(f"not finalised: {missing[0]} is missing while other processes work; rerun process 0 "
        "(everything done is skipped) or set --config.wait_seconds")
    return None
  per_stage = {s: pieces.read_json(p) for s, p in paths.items()}
  total_in = per_stage[chain[0]]["in"]
  excluded = per_stage.get("features", {}).get("not_in_splits", 0)
  written = per_stage[chain[-1]]["written"]
  rejected = sum(s["rejected"] for s in per_stage.values())
  # Cropping keeps an utterance but drops its audio past audio.max_seconds: counted per stage, and in
  # total as the last stage that loads audio saw it (the features stage: what training gets).
  cropping = [s for s in chain if "cropped" in per_stage[s]]
  summary = {"in": total_in, "written": written, "rejected": rejected,
             "excluded_by_split_map": excluded, "balanced": total_in == written + rejected + excluded,
             "cropped": per_stage[cropping[-1]]["cropped"] if cropping else 0,
             "cropped_seconds": round(per_stage[cropping[-1]].get("cropped_seconds", 0.0), 3) if cropping else 0.0,
             "stages": {s: {k: v[k] for k in ("in", "written", "rejected", "reasons", "cropped",
                                              "cropped_seconds") if k in v}
                        for s, v in per_stage.items()}}
  # Where each model ran (provenance.py): the ASR and labeler ids, compute type, versions and machine.
  where = {s: v["provenance"] for s, v in per_stage.items() if "provenance" in v}
  if where:
    summary["provenance"] = where
  pieces.concat_files([os.path.join(BY_NAME[s].out_dir(config, workdir), "errors.jsonl") for s in chain],
                      os.path.join(workdir, "errors.jsonl"))
  pieces.write_json(os.path.join(workdir, "summary.json"), summary)
  log(f"utterances in {total_in} = written {written} + rejected {rejected}"
      + (f" + excluded {excluded}" if excluded else "") + f" -> {os.path.join(workdir, 'summary.json')}")
  return summary
