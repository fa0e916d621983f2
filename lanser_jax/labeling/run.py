r"""The offline stages, from a corpus on disk to weakly labelled training shards.

  python -m lanser_jax.labeling.run --config=experiments/labeling/local_tiny.py \
      --stage=manifest|asr|label|features|all --workdir=DIR [--num_shards=N --shard_index=I] \
      [--config.key=value ...]

Stage     reads                                   writes (all under --workdir)
manifest  the corpus (config.manifest)            manifest/manifest.jsonl, errors.jsonl, summary.json
asr       manifest/manifest.jsonl + audio         asr/transcripts-*.jsonl (lanser_jax/labeling/asr.py)
label     asr/transcripts-*.jsonl (or, with         labels/labels-*.jsonl, labels/label_names.json
          label.text_source=manifest, the
          manifest's own `text`)
features  manifest + audio (+ labels/ when        <features.dir_name>/<split>-*.array_record + stats
          features.label_source="weak")           sidecars, dataset.json, stats.json
Each of asr, label and features also writes errors-*.jsonl and summary-*.json per piece and, once
all pieces exist, errors.jsonl and summary.json; `all` adds <workdir>/summary.json and errors.jsonl
over the chain of stages, where utterances in = written + rejected.

Scale-out: the same command runs once per host; --num_shards/--shard_index (else SLURM job-array
variables, else --jax_distributed for jax.process_index/count) pick the pieces of each stage this
host does (stages.py). The manifest is written by process 0; the others wait for it.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags
import numpy as np

from input_pipeline import adapters, manifests, protocols, records
from lanser_jax import audio as audio_lib
from lanser_jax import features as features_lib
from lanser_jax import fileio
from lanser_jax.labeling import asr, stages

STAGES = ("manifest", "asr", "label", "features")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Labelling config file.", lock_config=True)
_STAGE = flags.DEFINE_enum("stage", "all", STAGES + ("all",), "Stage to run; all = config.stages.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for every output of the stages.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 0, "Processes sharing the work (0: from env).")
_SHARD_INDEX = flags.DEFINE_integer("shard_index", 0, "This process's index in [0, num_shards).")
_JAX_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False,
                                     "Call jax.distributed.initialize() and use its process index.")


def log(msg: str):
  print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# manifest


def manifest_stage(config, workdir: str, process: tuple[int, int]):
  out_dir = os.path.join(workdir, "manifest")
  summary_path = os.path.join(out_dir, "summary.json")
  if process[0] != 0:
    log("[manifest] process 0 writes the manifest; nothing to do here")
    return None
  if fileio.exists(summary_path):
    log(f"[manifest] {summary_path} exists: skipped")
    return stages.read_json(summary_path)
  progress = stages.Progress("manifest", None)
  counts = manifests.write_manifest(os.path.join(out_dir, "manifest.jsonl"),
                                    adapters.rows(config.manifest),
                                    os.path.join(out_dir, "errors.jsonl"), progress)
  progress.close()
  reasons = {}
  for e in stages.read_jsonl(os.path.join(out_dir, "errors.jsonl")):
    kind = e["reason"].split(":")[0][:60]
    reasons[kind] = reasons.get(kind, 0) + 1
  summary = dict(stage="manifest", **{"in": counts["written"] + counts["rejected"]}, **counts,
                 reasons=reasons)
  stages.write_json(summary_path, summary)
  log(f"[manifest] {counts['written']} rows, {counts['rejected']} rejected {reasons}; "
      f"splits {counts['splits']}, labels {counts['labels']}")
  return summary


def _wait(path: str, seconds: float):
  import time
  deadline = time.monotonic() + seconds
  while not fileio.exists(path):
    if time.monotonic() > deadline:
      raise FileNotFoundError(f"{path}: not there after {seconds} s; run the manifest stage first")
    time.sleep(10)
  return stages.read_json(path)


# ---------------------------------------------------------------------------------------------------
# label


def label_stage(config, workdir: str, process: tuple[int, int], labeler=None):
  from lanser_jax.labeling import labelers
  asr_dir, stage_dir = os.path.join(workdir, "asr"), os.path.join(workdir, "labels")
  num_pieces, lc = config.output_shards, config.label

  text_source = lc.get("text_source", "asr")
  if text_source not in ("asr", "manifest"):
    raise ValueError(f"label.text_source={text_source!r}: expected 'asr' or 'manifest'")

  def do_piece(piece: int):
    nonlocal labeler
    src = os.path.join(asr_dir, stages.piece_name("transcripts", piece, num_pieces, "jsonl"))
    if text_source == "asr" and not stages.piece_done(asr_dir, piece, num_pieces):
      raise FileNotFoundError(f"{src}: ASR piece {piece} is not complete; run --stage=asr first")
    if labeler is None:
      labeler = labelers.build_labeler(config.labeler)
    names = list(labeler.label_names)
    stages.write_json(os.path.join(stage_dir, "label_names.json"), names)
    items = (list(stages.read_jsonl(src)) if text_source == "asr"
             else manifest_texts(os.path.join(workdir, "manifest", "manifest.jsonl"), piece, num_pieces))
    progress = stages.Progress(f"label {piece}/{num_pieces}", len(items))
    with stages.PieceOutputs(stage_dir, "label", piece, num_pieces) as out:
      labels_f = out.open_jsonl("labels")
      keep = []
      for t in items:
        why = t.pop("rejected", None) or transcript_problem(t, lc) or (
            labeler.language_problem(t.get("language")) if hasattr(labeler, "language_problem") else None)
        if why:
          out.error(t["utt_id"], why, t.get("text"))
        else:
          keep.append(t)
      progress.update(len(items) - len(keep))
      for i in range(0, len(keep), lc.batch_size):
        chunk = keep[i:i + lc.batch_size]
        texts = [t["text"] for t in chunk]
        scores = np.asarray(labeler.score(texts, [t.get("language") for t in chunk])  # per-language templates
                            if hasattr(labeler, "language_problem") else labeler.score(texts), np.float32)
        index, margin = labelers.weak_labels(scores)
        for t, s, k, m in zip(chunk, scores, index, margin):
          labels_f.write(stages.json_line({
              "utt_id": t["utt_id"], "text": t["text"], "label": names[int(k)],
              "label_index": int(k), "scores": [round(float(x), 6) for x in s],
              "margin": float(m)}))
        progress.update(len(chunk))
      progress.close()
      out.commit({"in": len(items), "written": len(keep)})

  return stages.run_pieces("label", stage_dir, num_pieces, process, do_piece, log)


def manifest_texts(path: str, piece: int, num_pieces: int) -> list[dict]:
  """label.text_source='manifest': the corpus's own transcripts (row.text, byte for byte) of one piece, in
  the shape of ASR transcripts; a row without text (or a bad line) carries the reason it is rejected."""
  from input_pipeline import manifests
  items = []
  for row in stages.Manifest(path).piece(piece, num_pieces):
    if isinstance(row, manifests.RejectedRow):
      items.append({"utt_id": row.utt_id, "text": None, "rejected": row.reason})
    elif not isinstance(row.text, str) or not row.text.strip():
      items.append({"utt_id": row.utt_id, "text": row.text,
                    "rejected": "no text in the manifest (label.text_source='manifest')"})
    else:
      items.append({"utt_id": row.utt_id, "text": row.text, "language": row.extra.get("language")})
  return items


def transcript_problem(t: dict, lc) -> str | None:
  """Why a transcript makes no weak label (None: it does); thresholds from config.label."""
  text = (t.get("text") or "").strip()
  if not text:
    return "empty transcript"
  if len(text.split()) < lc.min_words:
    return f"transcript too short: {len(text.split())} words < min_words {lc.min_words}"
  if len(text) < lc.min_chars:
    return f"transcript too short: {len(text)} characters < min_chars {lc.min_chars}"
  if t.get("no_speech_prob", 0.0) > lc.max_no_speech_prob:
    return (f"high no-speech probability: {t['no_speech_prob']:.3f} > max_no_speech_prob "
            f"{lc.max_no_speech_prob}")
  if t.get("avg_logprob", 0.0) < lc.min_avg_logprob:
    return f"low ASR confidence: avg_logprob {t['avg_logprob']:.3f} < {lc.min_avg_logprob}"
  if lc.languages and t.get("language") not in lc.languages:
    return f"language {t.get('language')!r} not in label.languages {list(lc.languages)}"
  if t.get("compression_ratio", 0.0) > lc.max_compression_ratio:
    return (f"repetitive transcript: compression ratio {t['compression_ratio']:.2f} > "
            f"{lc.max_compression_ratio}")
  return None


# ---------------------------------------------------------------------------------------------------
# features


def output_split(row, split_map) -> str | None:
  """The feature split of a manifest row: split_map["utt:<utt_id>"] (an evaluation protocol, see
  input_pipeline/protocols.py), ["split/speaker"] or ["split"], else the row's split ("train" when it
  has none). A map value of "" leaves the row out."""
  split = row.split or "train"
  if split_map:
    key = f"{split}/{row.speaker}"
    split = split_map.get(f"utt:{row.utt_id}", split_map.get(key, split_map.get(split, split)))
  return split or None


def features_stage(config, workdir: str, process: tuple[int, int]):
  fc = config.features
  options = features_lib.LogMelOptions.from_config(fc)
  audio_options = audio_lib.AudioOptions.from_config(config.audio)
  if options.sample_rate != audio_options.sample_rate:
    raise ValueError(f"features.sample_rate {options.sample_rate} != audio.sample_rate "
                     f"{audio_options.sample_rate}")
  manifest = stages.Manifest(os.path.join(workdir, "manifest", "manifest.jsonl"))
  out_dir = os.path.join(workdir, fc.dir_name)
  labels_dir = os.path.join(workdir, "labels")
  num_pieces, split_map = config.output_shards, dict(fc.split_map or {})
  if fc.get("protocol"):  # every process derives the same assignment from the whole manifest
    split_map.update(protocols.split_map(manifest.piece(0, 1), fc.protocol.to_dict()))
  splits = sorted(_all_splits(manifest, split_map))
  if fc.label_source == "weak":
    names_path = os.path.join(labels_dir, "label_names.json")
    if not fileio.exists(names_path):
      raise FileNotFoundError(f"{names_path}: missing; features.label_source='weak' needs "
                              "--stage=label first (or label_source='human'/'none')")
    label_names = stages.read_json(names_path)
  else:
    label_names = list(fc.label_names)
  log_mel = features_lib.LogMel(options)

  def do_piece(piece: int):
    weak = {}
    if fc.label_source == "weak":
      if not stages.piece_done(labels_dir, piece, num_pieces):
        raise FileNotFoundError(f"{labels_dir}: label piece {piece} is not complete; "
                                "run --stage=label first")
      src = os.path.join(labels_dir, stages.piece_name("labels", piece, num_pieces, "jsonl"))
      weak = {d["utt_id"]: d for d in stages.read_jsonl(src)}
    start, stop = stages.piece_range(len(manifest), piece, num_pieces)
    progress = stages.Progress(f"features {piece}/{num_pieces}", stop - start)
    with stages.PieceOutputs(out_dir, "features", piece, num_pieces) as out:
      writers = {s: records.ShardWriter(out_dir, s, piece, num_pieces, options.num_mel_bins)
                 for s in splits}
      counts = {"in": 0, "written": 0, "not_in_splits": 0, "no_weak_label": 0, "cropped": 0,
                "cropped_seconds": 0.0, "audio_seconds": 0.0}
      rows = []
      for row in manifest.piece(piece, num_pieces):
        if isinstance(row, manifests.Row) and output_split(row, split_map) is None:
          counts["not_in_splits"] += 1
        elif isinstance(row, manifests.Row) and fc.label_source == "weak" and row.utt_id not in weak:
          counts["no_weak_label"] += 1  # rejected upstream; listed in asr/ or labels/ errors
        else:
          rows.append(row)
      progress.update(stop - start - len(rows))
      decode = lambda row: audio_lib.load(row.audio, row.offset, row.duration, audio_options)
      batch = []

      def flush():
        for (row, clip), mel in zip(batch, log_mel([c.samples for _, c in batch])):
          try:
            example = make_example(row, mel, fc.label_source, label_names, weak)
            writers[output_split(row, split_map)].write(example)
            counts["written"] += 1
            counts["audio_seconds"] += clip.duration
            counts["cropped"] += int(clip.cropped)
            counts["cropped_seconds"] += clip.cropped_seconds
          except (ValueError, records.RecordError) as e:
            out.error(row.utt_id, str(e), row.audio)
        progress.update(len(batch))
        batch.clear()

      try:
        for row, clip in stages.decoded_rows(decode, rows, fc.decode_workers, counts, out, progress,
                                             (audio_lib.AudioError,)):
          batch.append((row, clip))
          if len(batch) >= fc.batch_clips:
            flush()
        flush()
      except BaseException:
        for w in writers.values():
          w.abort()
        raise
      for w in writers.values():
        w.close()
      progress.close()
      out.commit(counts)

  ran = stages.run_pieces("features", out_dir, num_pieces, process, do_piece, log)
  if process[0] == 0 and stages.wait_for_pieces(out_dir, num_pieces, config.wait_seconds, log=log):
    written = sum(stages.read_json(os.path.join(out_dir, stages.piece_name("summary", j, num_pieces, "json")))
                  ["written"] for j in range(num_pieces))
    if written == 0:  # no frames for statistics: no dataset.json; run_stages reports where the reasons are
      stages.merge_stage(out_dir, num_pieces)
      return ran
    stats_split = fc.stats_split if fc.stats_split in splits else splits[0]
    score_names = label_names if fc.label_source == "weak" else None
    records.write_dataset_info(out_dir, label_names, options.to_json(), splits, stats_split,
                               score_names=score_names,
                               extra={"label_source": fc.label_source,
                                      "corpus": config.manifest.adapter,
                                      **({"folds": fc.folds.to_dict()} if fc.get("folds") else {}),
                                      **({"protocol": fc.protocol.to_dict()} if fc.get("protocol") else {})})
    stages.merge_stage(out_dir, num_pieces)
  return ran


def _all_splits(manifest: stages.Manifest, split_map) -> set[str]:
  """Every output split, so each piece writes a (maybe empty) shard of each: list_shards needs
  all shard indices of a split to exist."""
  found = set()
  for row in manifest.piece(0, 1):
    if isinstance(row, manifests.Row):
      s = output_split(row, split_map)
      if s:
        found.add(s)
  if not found:
    raise ValueError(f"{manifest.path}: no rows go to any split")
  return found


def make_example(row, mel: np.ndarray, label_source: str, label_names, weak) -> records.Example:
  label, scores = records.NO_LABEL, None
  if label_source == "weak":
    w = weak[row.utt_id]
    label, scores = int(w["label_index"]), np.asarray(w["scores"], np.float32)
  elif label_source == "human":
    if row.label not in label_names:
      raise ValueError(f"label {row.label!r} not in features.label_names {list(label_names)}")
    label = list(label_names).index(row.label)
  return records.Example(utt_id=row.utt_id, log_mel=mel.astype(np.float16), label=label,
                         scores=scores, speaker_id=row.speaker)


# ---------------------------------------------------------------------------------------------------
# all


def run_stages(config, workdir: str, stage: str, process: tuple[int, int], labeler=None,
               transcriber=None) -> dict | None:
  """Runs one stage or config.stages in order; returns the end-to-end summary after `all`."""
  todo = list(config.stages) if stage == "all" else [stage]
  fileio.makedirs(workdir)
  if process[0] == 0:
    stages.write_json(os.path.join(workdir, f"config.{stage}.json"), json.loads(config.to_json()))
  for name in todo:
    log(f"=== stage {name} (process {process[0]} of {process[1]}) ===")
    if name != "manifest" and process[0] != 0:
      _wait(os.path.join(workdir, "manifest", "summary.json"), config.wait_seconds)
    if name == "manifest":
      manifest_stage(config, workdir, process)
    elif name == "asr":
      asr.run_stage(config, workdir, process, transcriber=transcriber, log=log)
    elif name == "label":
      label_stage(config, workdir, process, labeler=labeler)
    elif name == "features":
      features_stage(config, workdir, process)
    if name != "manifest" and process[0] == 0:
      stage_dir = os.path.join(workdir, {"label": "labels", "features": config.features.dir_name}
                               .get(name, name))
      if stages.wait_for_pieces(stage_dir, config.output_shards, config.wait_seconds, log=log):
        s = stages.merge_stage(stage_dir, config.output_shards)
        log(f"[{name}] in {s['in']} = written {s['written']} + rejected {s['rejected']} "
            f"{s['reasons']}")
        note = stages.crop_note(name, s, config.audio.max_seconds)
        if note:
          log(note)
        if stage != "all" and s["in"] and not s["written"]:
          raise stages.NothingSurvived(f"0 of {s['in']} utterances survived the {name} stage; reasons in "
                                       f"{os.path.join(stage_dir, 'errors.jsonl')}")
  if stage == "all" and process[0] == 0:
    summary = end_to_end_summary(config, workdir, todo)
    if summary is not None and summary["in"] and not summary["written"]:
      raise stages.NothingSurvived(f"0 of {summary['in']} utterances survived the stages; reasons in "
                                   f"{os.path.join(workdir, 'errors.jsonl')}")
    return summary
  return None


def end_to_end_summary(config, workdir: str, todo) -> dict | None:
  """Utterances in (corpus entries) = written (training records) + rejected (by any stage)."""
  dirs = {"manifest": "manifest", "asr": "asr", "label": "labels",
          "features": config.features.dir_name}
  # With human labels the features come straight from the manifest; asr/label are side products.
  side = ("asr", "label") if "features" in todo and config.features.label_source != "weak" else ()
  chain = [s for s in todo if s not in side]
  paths = {s: os.path.join(workdir, dirs[s], "summary.json") for s in chain}
  missing = [p for p in paths.values() if not fileio.exists(p)]
  if missing:
    log(f"not finalised: {missing[0]} is missing while other processes work; rerun process 0 "
        "(everything done is skipped) or set --config.wait_seconds")
    return None
  per_stage = {s: stages.read_json(p) for s, p in paths.items()}
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
  stages.concat_files([os.path.join(workdir, dirs[s], "errors.jsonl") for s in chain],
                      os.path.join(workdir, "errors.jsonl"))
  stages.write_json(os.path.join(workdir, "summary.json"), summary)
  log(f"utterances in {total_in} = written {written} + rejected {rejected}"
      + (f" + excluded {excluded}" if excluded else "") + f" -> {os.path.join(workdir, 'summary.json')}")
  return summary


def main(argv):
  del argv
  if _CONFIG.value.get("offline", False):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
  num_shards, shard_index = _NUM_SHARDS.value, _SHARD_INDEX.value
  if _JAX_DISTRIBUTED.value:
    import jax
    jax.distributed.initialize()
    num_shards, shard_index = jax.process_count(), jax.process_index()
  process = stages.resolve_process(num_shards, shard_index)
  try:
    run_stages(_CONFIG.value, _WORKDIR.value, _STAGE.value, process)
  except stages.NothingSurvived as e:  # a finding about the corpus, not a crash: no traceback
    log(f"error: {e}")
    sys.exit(1)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
