"""The one training-record format: every writer and reader of feature shards uses this module.

A feature dataset is a folder:

  <dir>/dataset.json                         label names, feature settings, shard counts per split
  <dir>/stats.json                           per-mel-bin mean/std and label counts of the training split
  <dir>/<split>-SSSSS-of-NNNNN.array_record  records, one serialised `Example` each
  <dir>/<split>-SSSSS-of-NNNNN.stats.json    the shard's running sums, merged into stats.json

A record (format 2) is a small header and the raw log-mel bytes:
  b"LJR2", uint32 little-endian n, n bytes of msgpack {utt_id: str, speaker_id: str, label: int (-1 when
  unknown), frames: int, mel_bins: int, scores: float32 little-endian bytes [num_scores] or nil (soft weak
  label)}, zero bytes up to the next multiple of 16, then log_mel: float16 little-endian [frames, mel_bins].
`decode` views the log-mels in the record's buffer (np.frombuffer, no copy): a crop is the first copy. No
pickle. Format 1 (msgpack of the whole dict, which early versions wrote) is not read: a folder of it fails at
`read_dataset_info` naming a shard, a record of it at `decode`; the features stage rewrites the folder.

Shards are ArrayRecord files of one record per chunk (`group_size:1`, what random access needs), written
uncompressed (WRITER_OPTIONS): float16 log-mels shrink only ~20% under array_record's default zstd:3 while
a random read of a ~100 KB record costs ~4x the CPU time (benchmarks/README.md).
dataset.json records the format version and, per split, the record formats and writer options of its shards
(from each shard's stats sidecar).

Shards are written under a temporary name and renamed when complete, so a shard that exists is whole. The
folder may be a gs:// or s3:// URL (lanser_jax.utils.fileio): shards are then written locally and uploaded whole;
reading them from a URL is `check_readable`'s subject.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
from typing import Any, Iterable, Sequence

import msgpack
import numpy as np
from array_record.python import array_record_module

from lanser_jax.utils import faults, fileio

FORMAT_VERSION = 2  # of the records `encode` writes and of dataset.json; the only one read
WRITER_OPTIONS = "group_size:1,uncompressed"
REWRITE_JSON = ("the files of a feature folder are written by the features stage (--stage=features): restore "
                "the file or write the folder again")
REWRITE = ("write the folder again with the offline features stage (--stage=features), in a new workdir or "
           "after removing its shards")
NO_LABEL = -1
_MAGIC = b"LJR2"
_PREFIX = struct.Struct("<4sI")
_ALIGN = 16
_SHARD_RE = re.compile(r"^(?P<split>[\w.]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.array_record$")


@faults.one_line
class RecordError(ValueError):
  """A record, shard or dataset folder that does not match the format."""


@dataclasses.dataclass(frozen=True)
class Example:
  utt_id: str
  log_mel: np.ndarray  # float16 [frames, mel_bins]
  label: int = NO_LABEL
  scores: np.ndarray | None = None  # float32 [num_scores]
  speaker_id: str = ""


def encode(example: Example) -> bytes:
  """Serialises an example (format 2); checks shapes and types so that a bad record is never written."""
  log_mel = np.asarray(example.log_mel)
  if log_mel.ndim != 2 or log_mel.shape[0] == 0 or log_mel.shape[1] == 0:
    raise RecordError(f"{example.utt_id}: log_mel must be a non-empty [frames, mel_bins] matrix, "
                      f"got shape {log_mel.shape}")
  if not np.all(np.isfinite(log_mel)):
    raise RecordError(f"{example.utt_id}: log_mel holds NaN or inf")
  scores = None
  if example.scores is not None:
    scores = np.asarray(example.scores, np.float32)
    if scores.ndim != 1:
      raise RecordError(f"{example.utt_id}: scores must be a vector, got shape {scores.shape}")
    scores = scores.astype("<f4").tobytes()
  header = msgpack.packb({"utt_id": str(example.utt_id), "speaker_id": str(example.speaker_id),
                          "label": int(example.label), "frames": int(log_mel.shape[0]),
                          "mel_bins": int(log_mel.shape[1]), "scores": scores})
  pad = -(_PREFIX.size + len(header)) % _ALIGN
  return b"".join([_PREFIX.pack(_MAGIC, len(header)), header, bytes(pad),
                   np.ascontiguousarray(log_mel, "<f2").tobytes()])


def decode(data: bytes, where: str = "record") -> Example:
  """Inverse of `encode`; `where` names the shard and index in error messages. The log-mels (and scores) are
  read-only views of `data`."""
  if data[:4] != _MAGIC:
    if data[:1] and (0x80 <= data[0] <= 0x8F or data[0] in (0xDE, 0xDF)):  # a msgpack map: format 1
      raise RecordError(f"{where}: a format-1 record, which this lanser-jax no longer reads; {REWRITE}")
    raise RecordError(f"{where}: not a lanser-jax record (it starts {bytes(data[:4])!r}, not {_MAGIC!r})")
  try:
    _, n = _PREFIX.unpack_from(data)
    h = msgpack.unpackb(data[_PREFIX.size:_PREFIX.size + n])
    frames, bins = h["frames"], h["mel_bins"]
    offset = _PREFIX.size + n + (-(_PREFIX.size + n) % _ALIGN)
    if offset + 2 * frames * bins != len(data):
      raise ValueError(f"{len(data)} bytes, the header says {offset + 2 * frames * bins} "
                       f"({frames} x {bins} float16 after {offset})")
    log_mel = np.frombuffer(data, "<f2", frames * bins, offset).reshape(frames, bins)
    scores = None if h["scores"] is None else np.frombuffer(h["scores"], "<f4")
    return Example(utt_id=h["utt_id"], speaker_id=h["speaker_id"], label=int(h["label"]), log_mel=log_mel,
                   scores=scores)
  except Exception as e:  # a short record, a corrupt header or a missing key
    raise RecordError(f"{where}: not a lanser-jax record ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------------------------------------------
# Shard names.


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}.array_record"


def list_shards(data_dir: str, split: str) -> list[str]:
  """All shards of a split, sorted; fails if the set is incomplete or mixes shard counts."""
  paths = fileio.glob(os.path.join(data_dir, f"{split}-*-of-*.array_record"))
  if not paths:
    raise RecordError(f"{data_dir}: no shards for split {split!r} (expected {shard_name(split, 0, 1)} ...)")
  counts = {int(_SHARD_RE.match(os.path.basename(p))["count"]) for p in paths}
  if len(counts) != 1:
    raise RecordError(f"{data_dir}: split {split!r} mixes shard counts {sorted(counts)}")
  (count,) = counts
  indices = [int(_SHARD_RE.match(os.path.basename(p))["index"]) for p in paths]
  missing = sorted(set(range(count)) - set(indices))
  if missing:
    raise RecordError(f"{data_dir}: split {split!r} is missing shards {missing[:10]} of {count}")
  return paths


# ---------------------------------------------------------------------------------------------------
# Statistics: running sums per shard, merged into one stats.json.


@dataclasses.dataclass
class RunningStats:
  """Per-mel-bin sums in float64, and label counts; mergeable across shards and hosts."""
  num_mel_bins: int
  num_frames: int = 0
  num_examples: int = 0
  total: np.ndarray | None = None
  total_sq: np.ndarray | None = None
  label_counts: dict[int, int] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.total is None:
      self.total = np.zeros(self.num_mel_bins, np.float64)
      self.total_sq = np.zeros(self.num_mel_bins, np.float64)

  def add(self, example: Example):
    x = np.asarray(example.log_mel, np.float64)
    self.total += x.sum(0)
    self.total_sq += np.square(x).sum(0)
    self.num_frames += x.shape[0]
    self.num_examples += 1
    self.label_counts[example.label] = self.label_counts.get(example.label, 0) + 1

  def merge(self, other: "RunningStats") -> "RunningStats":
    if other.num_mel_bins != self.num_mel_bins:
      raise RecordError(f"cannot merge stats of {other.num_mel_bins} and {self.num_mel_bins} mel bins")
    counts = dict(self.label_counts)
    for k, v in other.label_counts.items():
      counts[k] = counts.get(k, 0) + v
    return RunningStats(self.num_mel_bins, self.num_frames + other.num_frames,
                        self.num_examples + other.num_examples, self.total + other.total,
                        self.total_sq + other.total_sq, counts)

  def to_json(self) -> dict[str, Any]:
    return {"num_mel_bins": self.num_mel_bins, "num_frames": self.num_frames,
            "num_examples": self.num_examples, "total": self.total.tolist(),
            "total_sq": self.total_sq.tolist(),
            "label_counts": {str(k): v for k, v in sorted(self.label_counts.items())}}

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> "RunningStats":
    return cls(d["num_mel_bins"], d["num_frames"], d["num_examples"], np.asarray(d["total"]),
               np.asarray(d["total_sq"]), {int(k): v for k, v in d["label_counts"].items()})

  def mean_std(self, min_std: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    if self.num_frames == 0:
      raise RecordError("no frames: cannot compute normalisation statistics")
    mean = self.total / self.num_frames
    var = np.maximum(self.total_sq / self.num_frames - np.square(mean), 0.0)
    return mean, np.maximum(np.sqrt(var), min_std)


class ShardWriter:
  """Writes one shard under a temporary name; `close()` renames it and writes its stats sidecar (which also
  records the record format and the ArrayRecord writer options, for dataset.json)."""

  def __init__(self, data_dir: str, split: str, index: int, count: int, num_mel_bins: int,
               options: str = WRITER_OPTIONS):
    fileio.makedirs(data_dir)
    self.path = os.path.join(data_dir, shard_name(split, index, count))
    # The C++ writer writes local files only: a shard for a bucket is written in a local temporary folder
    # and uploaded whole when complete (the object then appears at once, like the local rename).
    self._staged = fileio.StagedFiles("lanser_shard_")
    self._tmp = self._staged.path(self.path)
    self.options = options
    self._writer = array_record_module.ArrayRecordWriter(self._tmp, options)
    self.stats = RunningStats(num_mel_bins)

  def write(self, example: Example):
    if example.log_mel.shape[-1] != self.stats.num_mel_bins:
      raise RecordError(f"{example.utt_id}: {example.log_mel.shape[-1]} mel bins, shard expects "
                        f"{self.stats.num_mel_bins}")
    self._writer.write(encode(example))
    self.stats.add(example)

  def close(self):
    self._writer.close()
    write_json(self._stats_path(), {**self.stats.to_json(), "record_version": FORMAT_VERSION,
                                    "writer_options": self.options})
    self._staged.commit()  # to a bucket: an upload, then the local copy is deleted

  def _stats_path(self) -> str:
    return self.path.removesuffix(".array_record") + ".stats.json"

  def abort(self):
    """Removes what this writer wrote, closed or not: a piece that fails (a full disk) leaves no shard."""
    try:
      self._writer.close()
    except Exception:  # noqa: BLE001 -- the write that failed fails again here; the files go below
      pass
    self._staged.abort()
    fileio.remove(self._stats_path())

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    self.abort() if exc_type else self.close()


def write_split(data_dir: str, split: str, examples: Sequence[Example], num_shards: int,
                num_mel_bins: int) -> list[str]:
  """Writes a whole in-memory split round-robin over `num_shards` shards (small data, tests, demo)."""
  writers = [ShardWriter(data_dir, split, i, num_shards, num_mel_bins) for i in range(num_shards)]
  for i, ex in enumerate(examples):
    writers[i % num_shards].write(ex)
  for w in writers:
    w.close()
  return [w.path for w in writers]


def check_readable(data_dir: str, split: str):
  """Fails at start, with what to do, where the ArrayRecord reader cannot open this folder's shards.

  The reader (C++) opens local paths and, from array_record 0.8.6 on, gs:// objects through its own GCS
  client (Application Default Credentials; `CLOUD_STORAGE_EMULATOR_ENDPOINT` for an emulator). It has no
  s3:// (or other URL) support; there, and for a gs:// bucket it cannot reach, the path is a mount of the
  bucket: gcsfuse (what MaxText documents for Grain on TPU), mountpoint-s3 or s3fs-fuse.
  """
  if not fileio.is_url(data_dir):
    return
  mount = ("mount the bucket (gs://: gcsfuse --implicit-dirs BUCKET /mnt/BUCKET; s3://: mount-s3 BUCKET "
           "/mnt/BUCKET) and set data.dir to the mounted folder")
  if fileio.scheme(data_dir) != "gs":
    raise RecordError(f"{data_dir}: the ArrayRecord reader cannot read {fileio.scheme(data_dir)}:// URLs; "
                      f"{mount}")
  first = list_shards(data_dir, split)[0]
  try:
    reader = array_record_module.ArrayRecordReader(first, "readahead_buffer_size:0")
    try:
      ok = reader.ok() and reader.num_records() > 0
      if ok:
        reader.read([0])
    finally:
      reader.close()
  except RuntimeError as e:
    raise RecordError(f"{first}: the ArrayRecord reader cannot read this shard ({e}); {mount}") from e
  if not ok:
    raise RecordError(f"{first}: the ArrayRecord reader cannot open this shard (array_record's GCS client "
                      f"could not reach it, or it is empty); {mount}")


def _sidecar(path: str) -> dict[str, Any]:
  """A shard's stats sidecar, which also names its record format (format-1 sidecars named none)."""
  sidecar = path.removesuffix(".array_record") + ".stats.json"
  if not fileio.exists(sidecar):
    raise RecordError(f"{sidecar}: missing stats sidecar of shard {path}")
  d = read_json(sidecar)
  version = d.get("record_version", 1)
  if version != FORMAT_VERSION:
    raise RecordError(f"{path}: a shard of format-{version} records, which this lanser-jax does not read "
                      f"(it reads format {FORMAT_VERSION}); {REWRITE}")
  return d


def _sidecars(data_dir: str, split: str) -> list[dict[str, Any]]:
  return [_sidecar(path) for path in list_shards(data_dir, split)]


def merge_split_stats(data_dir: str, split: str, sidecars: list[dict[str, Any]] | None = None) -> RunningStats:
  """Merges the stats sidecars of all shards of a split."""
  total = None
  for d in _sidecars(data_dir, split) if sidecars is None else sidecars:
    s = RunningStats.from_json(d)
    total = s if total is None else total.merge(s)
  return total


# ---------------------------------------------------------------------------------------------------
# dataset.json and stats.json.


def write_dataset_info(data_dir: str, label_names: Sequence[str], feature: dict[str, Any],
                       splits: Iterable[str], stats_split: str = "train",
                       score_names: Sequence[str] | None = None, extra: dict[str, Any] | None = None):
  """Writes dataset.json and stats.json once all shards of `splits` exist."""
  info = {"version": FORMAT_VERSION, "label_names": list(label_names),
          "score_names": list(score_names) if score_names is not None else None,
          "feature": dict(feature), "splits": {}}
  for split in splits:
    sidecars = _sidecars(data_dir, split)
    st = merge_split_stats(data_dir, split, sidecars)
    info["splits"][split] = {
        "num_shards": len(sidecars), "num_examples": st.num_examples, "num_frames": st.num_frames,
        "record_versions": sorted({d["record_version"] for d in sidecars}),
        "writer_options": sorted({d["writer_options"] for d in sidecars})}
  info.update(extra or {})
  write_json(os.path.join(data_dir, "dataset.json"), info)
  st = merge_split_stats(data_dir, stats_split)
  mean, std = st.mean_std()
  write_json(os.path.join(data_dir, "stats.json"), {
      "split": stats_split, "num_examples": st.num_examples, "num_frames": st.num_frames,
      "mean": mean.tolist(), "std": std.tolist(),
      "label_counts": {(label_names[k] if 0 <= k < len(label_names) else str(k)): v
                       for k, v in sorted(st.label_counts.items())}})
  return info


def read_dataset_info(data_dir: str) -> dict[str, Any]:
  """dataset.json, checked: its keys, and that every split's shards hold records of this format."""
  path = os.path.join(data_dir, "dataset.json")
  if not fileio.exists(path):
    raise RecordError(f"{path}: missing; a feature folder needs dataset.json "
                      "(see lanser_jax/input_pipeline/records.py)")
  info = read_json(path)
  for key in ("label_names", "feature", "splits"):
    if key not in info:
      raise RecordError(f"{path}: missing key {key!r}")
  check_format(data_dir, info)
  check_finite_sums(data_dir, info)
  return info


def check_finite_sums(data_dir: str, info: dict[str, Any]):
  """The cheap per-shard check for NaN or infinite log-mels, once, when a feature folder is first read: a
  shard's stats sidecar holds the sums of its values and their squares, which are finite exactly when every
  value was (barring overflow, far beyond a log-mel's range). Raises RecordError naming the shard."""
  for split in info.get("splits", {}):
    for path in list_shards(data_dir, split):
      d = _sidecar(path)
      for key in ("total", "total_sq"):
        x = np.asarray(d.get(key, []), np.float64)
        if x.size and not np.all(np.isfinite(x)):
          bin_ = int(np.flatnonzero(~np.isfinite(x))[0])
          raise RecordError(f"{path}: its records hold NaN or infinite log-mel values (the shard's sum "
                            f"{key!r} is {x[bin_]} at mel bin {bin_}, {path.removesuffix('.array_record')}"
                            f".stats.json); {REWRITE}")


def check_format(data_dir: str, info: dict[str, Any] | None = None):
  """Raises RecordError naming a shard this version cannot read, and what to do, where dataset.json (`info`,
  read here when not given; nothing to check without one) says a split holds records of another format."""
  path = os.path.join(data_dir, "dataset.json")
  if info is None:
    if not fileio.exists(path):
      return
    info = read_json(path)
  version = info.get("version", 1)
  if version > FORMAT_VERSION:
    raise RecordError(f"{path}: format version {version}, this lanser-jax reads {FORMAT_VERSION} (written by a "
                      "newer version: update lanser-jax)")
  for split, d in info.get("splits", {}).items():
    if version != FORMAT_VERSION or d.get("record_versions", [1]) != [FORMAT_VERSION]:
      _sidecars(data_dir, split)  # names the first shard of another format
      raise RecordError(f"{path}: split {split!r} is recorded as record formats {d.get('record_versions', [1])} "
                        f"(format version {version}), which this lanser-jax does not read; {REWRITE}")


def read_stats(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Per-bin (mean, std) as float32 from a stats.json."""
  if not fileio.exists(path):
    raise RecordError(f"{path}: normalisation stats file not found")
  d = read_json(path)
  try:
    mean, std = np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32)
  except KeyError as e:
    raise RecordError(f"{path}: missing key {e}") from e
  except (TypeError, ValueError) as e:
    raise RecordError(f"{path}: mean and std must be lists of numbers ({e})") from e
  if mean.ndim != 1 or mean.shape != std.shape or not mean.size:
    raise RecordError(f"{path}: mean and std must be non-empty lists of one length, got shapes "
                      f"{mean.shape} and {std.shape}")
  for name, x in (("mean", mean), ("std", std)):
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
      raise RecordError(f"{path}: {name} holds {bad.size} NaN or infinite values (first at mel bin {bad[0]}: "
                        f"{x[bad[0]]}); {REWRITE_JSON}")
  bad = np.flatnonzero(std <= 0)
  if bad.size:
    raise RecordError(f"{path}: std must be > 0, mel bin {bad[0]} has {std[bad[0]]}; {REWRITE_JSON}")
  return mean, std


def write_json(path: str, obj: Any):
  """Writes JSON under a temporary name, then renames: a reader never sees half a file. The project's one
  JSON writer (stats sidecars, dataset.json, results.json, stage summaries). In a bucket: the object is
  written whole (fileio.atomic_write)."""
  with fileio.atomic_write(path) as f:
    json.dump(obj, f, indent=1, ensure_ascii=False)


def read_json(path: str) -> Any:
  """A JSON file; one that does not parse is a RecordError naming it and where it stops parsing."""
  try:
    return fileio.read_json(path)
  except UnicodeDecodeError as e:
    raise RecordError(f"{path}: not UTF-8 text (byte {e.start}); {REWRITE_JSON}") from None
  except json.JSONDecodeError as e:
    raise RecordError(f"{path}: invalid JSON (line {e.lineno}, column {e.colno}: {e.msg}); {REWRITE_JSON}") \
        from None


def non_finite_float16(log_mel: np.ndarray) -> int:
  """How many values of a float16 array are NaN or infinite: those whose exponent bits are all ones
  (a view as uint16: ~6x faster than np.isfinite on float16)."""
  bits = np.ascontiguousarray(log_mel).view(np.uint16)
  return int(np.count_nonzero((bits & 0x7C00) == 0x7C00))
