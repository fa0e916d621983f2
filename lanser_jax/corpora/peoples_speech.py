"""People's Speech as the HF hub ships it: parquet shards `<split>-NNNNN-of-MMMMM.parquet` with
columns id, audio {bytes, path} (FLAC, 16 kHz), duration_ms, text.

The scan reads only the small columns, one batch at a time (`iter_batches`), never the audio
bytes: a manifest row points at the audio as "<abs path>.parquet#row=<row index in the file>", and
the ASR/features stages decode that row's bytes later (lanser_jax/audio/decode.py). Both the scan and the
stages therefore run in bounded memory whatever the size of a shard.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Iterator

from lanser_jax.corpora import manifests

_SPLIT_FROM_NAME = re.compile(r"^(?P<split>[A-Za-z_]+)-\d+-of-\d+\.parquet$")
_SOURCE_ID = re.compile(r"_\d+\.(flac|wav|mp3)$")


def speaker_from_id(utt_id: str) -> str:
  """People's Speech has no speaker ids; the source recording an utterance was cut from is the
  closest grouping ("..._DOT_mp3_00012.flac" -> "..._DOT_mp3")."""
  return _SOURCE_ID.sub("", utt_id)


def rows(root: str, pattern: str = "**/*.parquet", split: str | None = None,
         id_column: str = "id", audio_column: str = "audio", text_column: str = "text",
         duration_column: str = "duration_ms", batch_size: int = 4096
         ) -> Iterator[manifests.Row | manifests.RejectedRow]:
  import pyarrow.parquet as pq  # optional dependency (the `label` extra)
  paths = sorted(glob.glob(os.path.join(root, pattern), recursive=True))
  if not paths:
    raise FileNotFoundError(f"no parquet files match {os.path.join(root, pattern)}")
  for path in paths:
    try:
      pf = pq.ParquetFile(path)
      names = set(pf.schema_arrow.names)
      if audio_column not in names or id_column not in names:
        raise ValueError(f"columns {sorted(names)} lack {id_column!r} or {audio_column!r}")
      columns = [c for c in (id_column, text_column, duration_column) if c in names]
      m = _SPLIT_FROM_NAME.match(os.path.basename(path))
      file_split = split or (m["split"] if m else None)
      row = 0
      for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
        d = batch.to_pydict()
        texts = d.get(text_column) or [None] * batch.num_rows
        durations = d.get(duration_column) or [None] * batch.num_rows
        for utt_id, text, dur_ms in zip(d[id_column], texts, durations):
          yield manifests.Row(
              utt_id=str(utt_id), audio=manifests.parquet_ref(path, row),
              duration=None if dur_ms is None else dur_ms / 1000.0,
              speaker=speaker_from_id(str(utt_id)), text=text, split=file_split)
          row += 1
    except Exception as e:  # a corrupt shard is listed, the scan goes on with the next one
      yield manifests.RejectedRow(utt_id=os.path.basename(path), source=path,
                                  reason=f"unreadable parquet file: {type(e).__name__}: {e}")
