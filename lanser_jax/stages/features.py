"""The features stage ("features"): manifest audio (+ weak or human labels) -> log-mel training records.

Reads   <workdir>/manifest/manifest.jsonl + audio (+ <workdir>/labels/ when features.label_source="weak")
Writes  <workdir>/<features.dir_name>/<split>-SSSSS-of-NNNNN.array_record shard files (one per split and
        piece) with their .stats.json sidecars, errors-*.jsonl, summary-*.json (see pieces.py); once every
        piece exists, dataset.json and stats.json (lanser_jax/input_pipeline/records.py)

The log-mel options are config.features with the sample rate of config.audio (the rate audio is decoded to).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from lanser_jax.corpora import labels, manifests, protocols
from lanser_jax.input_pipeline import records
from lanser_jax.audio import decode as decode_lib
from lanser_jax.audio import log_mel as log_mel_lib
from lanser_jax.utils import fileio
from lanser_jax.utils import progress as progress_lib
from lanser_jax.stages import manifest, pieces, stage


def output_split(row, split_map) -> str | None:
  """The feature split of a manifest row: split_map["utt:<utt_id>"] (an evaluation protocol, see
  lanser_jax/corpora/protocols.py), ["split/speaker"] or ["split"], else the row's split ("train" when it
  has none). A map value of "" leaves the row out."""
  split = row.split or "train"
  if split_map:
    key = f"{split}/{row.speaker}"
    split = split_map.get(f"utt:{row.utt_id}", split_map.get(key, split_map.get(split, split)))
  return split or None


def no_split(row, split_map) -> bool:
  """A manifest row without a split that no split_map entry places: output_split sends it to train."""
  if row.split:
    return False
  return not (split_map and (f"utt:{row.utt_id}" in split_map or f"train/{row.speaker}" in split_map
                             or "train" in split_map))


def no_split_note(summary) -> str | None:
  """A warning line when manifest rows without a split went to train (the features summary's `no_split`)."""
  if not summary.get("no_split"):
    return None
  return (f"[features] {summary['no_split']} manifest rows have no split and went to 'train' (counted as "
          "no_split in features/summary.json); give every row a split, or place them with features.split_map")


def all_splits(manifest_: pieces.Manifest, split_map) -> set[str]:
  """Every output split, so each piece writes a (maybe empty) shard file of each: list_shards needs
  all shard indices of a split to exist."""
  found = set()
  for row in manifest_.piece(0, 1):
    if isinstance(row, manifests.Row):
      s = output_split(row, split_map)
      if s:
        found.add(s)
  if not found:
    raise ValueError(f"{manifest_.path}: no rows go to any split")
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


@dataclasses.dataclass
class _State:
  config: Any
  options: log_mel_lib.LogMelOptions
  audio_options: decode_lib.AudioOptions
  manifest: pieces.Manifest
  out_dir: str
  labels_dir: str
  split_map: dict
  splits: list[str]
  label_names: list[str]
  log_mel: log_mel_lib.LogMel


class FeaturesStage(stage.Stage):
  name = "features"
  inputs = ("manifest", "label")  # labels only with features.label_source="weak"

  def folder(self, config) -> str:
    return config.features.dir_name

  def setup(self, config, workdir, log, **models):
    fc = config.features
    options = log_mel_lib.LogMelOptions.from_config(fc, sample_rate=config.audio.sample_rate)
    manifest_ = pieces.Manifest(manifest.manifest_path(workdir))
    labels_dir = os.path.join(workdir, "labels")
    split_map = dict(fc.split_map or {})
    if fc.get("protocol"):  # every process derives the same assignment from the whole manifest
      split_map.update(protocols.split_map(manifest_.piece(0, 1), fc.protocol.to_dict()))
    splits = sorted(all_splits(manifest_, split_map))
    if len(splits) == 1 and fc.label_source == "human":  # a labelled list without splits: say so before training
      log(f"[features] warning: every row goes to split {splits[0]!r}; training selects checkpoints on a "
          "validation split: set features.protocol (custom.py: protocol=speaker_kfold) or a split column")
    if fc.label_source == "weak":
      names_path = os.path.join(labels_dir, "label_names.json")
      if not fileio.exists(names_path):
        raise FileNotFoundError(f"{names_path}: missing; features.label_source='weak' needs "
                                "--stage=label first (or label_source='human'/'none')")
      label_names = pieces.read_json(names_path)
    elif fc.label_source == "human":  # declared and checked, or the data's own (lanser_jax/corpora/labels.py)
      label_names = labels.label_names(labels.counts(manifest_.piece(0, 1)), fc.label_names, manifest_.path)
    else:
      label_names = list(fc.label_names)
    return _State(config, options, decode_lib.AudioOptions.from_config(config.audio), manifest_,
                  self.out_dir(config, workdir), labels_dir, split_map, splits, label_names,
                  log_mel_lib.LogMel(options))

  def run_piece(self, state, piece, num_pieces):
    fc, split_map = state.config.features, state.split_map
    weak = {}
    if fc.label_source == "weak":
      if not pieces.piece_done(state.labels_dir, piece, num_pieces):
        raise FileNotFoundError(f"{state.labels_dir}: label piece {piece} is not complete; "
                                "run --stage=label first")
      src = os.path.join(state.labels_dir, pieces.piece_name("labels", piece, num_pieces, "jsonl"))
      weak = {d["utt_id"]: d for d in pieces.read_jsonl(src)}
    start, stop = pieces.piece_range(len(state.manifest), piece, num_pieces)
    progress = progress_lib.Progress(f"features {piece}/{num_pieces}", stop - start)
    with pieces.PieceOutputs(state.out_dir, "features", piece, num_pieces) as out:
      writers = {s: records.ShardWriter(state.out_dir, s, piece, num_pieces, state.options.num_mel_bins)
                 for s in state.splits}
      counts = {"in": 0, "written": 0, "not_in_splits": 0, "no_weak_label": 0, "cropped": 0,
                "cropped_seconds": 0.0, "audio_seconds": 0.0, "no_split": 0}
      rows = []
      for row in state.manifest.piece(piece, num_pieces):
        if isinstance(row, manifests.Row) and output_split(row, split_map) is None:
          counts["not_in_splits"] += 1
        elif isinstance(row, manifests.Row) and fc.label_source == "weak" and row.utt_id not in weak:
          counts["no_weak_label"] += 1  # rejected upstream; listed in asr/ or labels/ errors
        else:
          rows.append(row)
          # Counted, and still read: they go to train, as output_split says.
          counts["no_split"] += int(isinstance(row, manifests.Row) and no_split(row, split_map))
      progress.update(stop - start - len(rows))
      decode = lambda row: decode_lib.load(row.audio, row.offset, row.duration, state.audio_options)
      batch = []

      def flush():
        for (row, clip), mel in zip(batch, state.log_mel([c.samples for _, c in batch])):
          try:
            example = make_example(row, mel, fc.label_source, state.label_names, weak)
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
        for row, clip in pieces.decoded_rows(decode, rows, fc.decode_workers, counts, out, progress,
                                             (decode_lib.AudioError,)):
          batch.append((row, clip))
          if len(batch) >= fc.batch_clips:
            flush()
        flush()
        for w in writers.values():
          w.close()
        progress.close()
        out.commit(counts)
      except BaseException:  # no shard of this piece stays, closed or not, unless its summary was written
        for w in writers.values():
          w.abort()
        raise

  def finish(self, state):
    """dataset.json and stats.json over every piece; none when nothing was written (no frames for statistics:
    the chain's summary says where the reasons are)."""
    fc, config, num_pieces = state.config.features, state.config, state.config.num_pieces
    written = sum(pieces.read_json(os.path.join(state.out_dir, pieces.piece_name("summary", j, num_pieces,
                                                                                  "json")))["written"]
                  for j in range(num_pieces))
    if written == 0:
      return
    stats_split = fc.stats_split if fc.stats_split in state.splits else state.splits[0]
    score_names = state.label_names if fc.label_source == "weak" else None
    records.write_dataset_info(state.out_dir, state.label_names, state.options.to_json(), state.splits,
                               stats_split, score_names=score_names,
                               extra={"label_source": fc.label_source,
                                      "corpus": config.manifest.adapter,
                                      **({"folds": fc.folds.to_dict()} if fc.get("folds") else {}),
                                      **({"protocol": fc.protocol.to_dict()} if fc.get("protocol") else {})})


STAGE = FeaturesStage()
