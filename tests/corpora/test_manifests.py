"""Manifest format and corpus adapters, on tiny fake corpora that mimic each real layout."""

import csv
import io
import json
import os

import numpy as np
import pytest
import soundfile

from lanser_jax import corpora
from lanser_jax.corpora import manifests
from lanser_jax.corpora import emotion, generic, peoples_speech
from helpers import write_audio_container
from builders import make_crema_d, write_wav  # noqa: F401
from lanser_jax.audio import decode


def split_rows(it):
  rows, rejected = [], []
  for r in it:
    (rejected if isinstance(r, manifests.RejectedRow) else rows).append(r)
  return rows, rejected


# ---------------------------------------------------------------------------------------------------
# Format.


def test_write_read_roundtrip_rejects_duplicates_and_bad_rows(tmp_path):
  rows = [manifests.Row("a", "a.wav", speaker="s1", label="happy", text="hi", split="train",
                        extra={"session": 1}),
          manifests.Row("b", "/abs/b.wav", offset=1.5, duration=2.0),
          manifests.Row("a", "other.wav"),  # duplicate id
          manifests.Row("c", "c.wav", offset=-1.0),  # negative offset
          manifests.RejectedRow("d", "d.wav", "label 'fru' not in the 4-class set")]
  path, errors = str(tmp_path / "m" / "manifest.jsonl"), str(tmp_path / "m" / "errors.jsonl")
  counts = manifests.write_manifest(path, rows, errors)
  assert counts["written"] == 2 and counts["rejected"] == 3
  assert counts["splits"] == {"train": 1, "None": 1}
  back = list(manifests.read_manifest(path))
  assert [r.utt_id for r in back] == ["a", "b"]
  assert back[0].audio == str(tmp_path / "m" / "a.wav")  # relative to the manifest's folder
  assert back[0].extra == {"session": 1} and back[1].offset == 1.5
  line = json.loads(open(path).readline())
  assert set(manifests.REQUIRED_KEYS) <= set(line)
  reasons = [json.loads(l)["reason"] for l in open(errors)]
  assert reasons[0].startswith("duplicate utt_id") and "offset" in reasons[1] and "fru" in reasons[2]
  assert not os.path.exists(path + ".tmp")


def test_read_manifest_names_the_bad_line(tmp_path):
  path = tmp_path / "m.jsonl"
  path.write_text('{"utt_id": "a", "audio": "a.wav"}\n{"utt_id": "b"}\n')
  with pytest.raises(manifests.ManifestError, match=r"m.jsonl:2.*'audio'"):
    list(manifests.read_manifest(str(path)))


def test_a_line_that_is_not_utf8_is_one_bad_line(tmp_path):
  """Strictly it raises naming the line; leniently (jobs) and in the stages' piece reader it comes back as a
  RejectedRow and the lines around it still load."""
  from lanser_jax.stages import pieces
  path = tmp_path / "m.jsonl"
  path.write_bytes(b'{"utt_id": "a", "audio": "a.wav"}\n{"utt_id": "b\xff", "audio": "b.wav"}\n'
                   b'{"utt_id": "c", "audio": "c.wav", "text": "caf\xc3\xa9"}\n')
  with pytest.raises(manifests.ManifestError, match=r"m.jsonl:2: not JSON.*utf-8"):
    list(manifests.read_manifest(str(path)))
  for rows in (list(manifests.read_manifest(str(path), lenient=True)),
               list(pieces.Manifest(str(path)).piece(0, 1))):
    assert [type(r).__name__ for r in rows] == ["Row", "RejectedRow", "Row"]
    assert "not JSON" in rows[1].reason and rows[2].text == "café"
    assert rows[2].audio == str(tmp_path / "c.wav")


def test_parquet_refs():
  ref = manifests.parquet_ref("/d/train-00001-of-00002.parquet", 17)
  assert ref == "/d/train-00001-of-00002.parquet#row=17"
  assert manifests.parse_parquet_ref(ref) == ("/d/train-00001-of-00002.parquet", 17)
  assert manifests.parse_parquet_ref("/d/x.wav") is None


# ---------------------------------------------------------------------------------------------------
# People's Speech.


def make_peoples_speech(root, rows_per_file=(5, 3)):
  import pyarrow as pa
  import pyarrow.parquet as pq
  os.makedirs(root, exist_ok=True)
  k = 0
  for f, n in enumerate(rows_per_file):
    ids, blobs, durs, texts = [], [], [], []
    for i in range(n):
      buf = io.BytesIO()
      t = np.arange(8000) / 16000
      soundfile.write(buf, (0.4 * np.sin(2 * np.pi * 100 * (k + 1) * t)).astype(np.float32),
                      16000, format="FLAC")
      ids.append(f"rec{f}_DOT_mp3_{i:05d}.flac")
      blobs.append({"bytes": buf.getvalue(), "path": ids[-1]})
      durs.append(500)
      texts.append(f"utterance number {k}")
      k += 1
    pq.write_table(pa.table({"id": ids, "audio": blobs, "duration_ms": durs, "text": texts}),
                   os.path.join(root, f"train-{f:05d}-of-{len(rows_per_file):05d}.parquet"),
                   row_group_size=2)


def test_peoples_speech_rows_point_into_parquet(tmp_path):
  pytest.importorskip("pyarrow")
  root = str(tmp_path / "ps" / "clean")
  make_peoples_speech(root)
  open(os.path.join(root, "train-00009-of-00010.parquet"), "wb").write(b"PAR1 broken")
  rows, rejected = split_rows(peoples_speech.rows(os.path.dirname(root), batch_size=2))
  assert len(rows) == 8 and len(rejected) == 1 and "unreadable parquet" in rejected[0].reason
  assert rows[6].utt_id == "rec1_DOT_mp3_00001.flac"
  assert rows[6].audio.endswith("train-00001-of-00002.parquet#row=1")
  assert rows[6].speaker == "rec1_DOT_mp3" and rows[6].split == "train"
  assert rows[6].text == "utterance number 6" and rows[6].duration == 0.5
  for k in (0, 3, 6):  # the row reference decodes to that row's tone
    a = decode.load(rows[k].audio, rows[k].offset, rows[k].duration)
    peak = np.argmax(np.abs(np.fft.rfft(a.samples))) / a.duration
    assert peak == pytest.approx(100 * (k + 1), abs=4)


# ---------------------------------------------------------------------------------------------------
# IEMOCAP.


def make_iemocap(root):
  """Two sessions; labels cover the merge (exc), drops (fru, xxx) and a missing wav."""
  spec = {1: [("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M000", "exc"),
              ("Ses01F_impro01_F001", "fru"), ("Ses01F_impro01_M001", "ang")],
          2: [("Ses02M_script01_1_F000", "sad"), ("Ses02M_script01_1_M000", "hap"),
              ("Ses02M_script01_1_M001", "xxx"), ("Ses02M_script01_1_F001", "neu")]}
  for k, utts in spec.items():
    dialog = "_".join(utts[0][0].split("_")[:-1])
    sdir = os.path.join(root, f"Session{k}")
    emo_lines, tr_lines = ["% header line\n"], []
    for j, (utt, emo) in enumerate(utts):
      emo_lines.append(f"[{j}.0000 - {j}.5000]\t{utt}\t{emo}\t[2.5000, 3.0000, 2.0000]\n")
      tr_lines.append(f"{utt} [00{j}.0000-00{j}.5000]: words of {utt}.\n")
      if utt != "Ses02M_script01_1_F001":  # its wav is missing
        write_wav(os.path.join(sdir, "sentences", "wav", dialog, utt + ".wav"))
    for sub, lines in (("EmoEvaluation", emo_lines), ("transcriptions", tr_lines)):
      os.makedirs(os.path.join(sdir, "dialog", sub), exist_ok=True)
      open(os.path.join(sdir, "dialog", sub, dialog + ".txt"), "w").writelines(lines)


def test_iemocap_four_classes_sessions_and_speakers(tmp_path):
  root = str(tmp_path / "IEMOCAP_full_release")
  make_iemocap(root)
  counts = manifests.write_manifest(str(tmp_path / "m.jsonl"),
                                    corpora.rows({"adapter": "iemocap", "root": root}),
                                    str(tmp_path / "e.jsonl"))
  rows = {r.utt_id: r for r in manifests.read_manifest(str(tmp_path / "m.jsonl"))}
  assert counts["written"] == 5 and counts["rejected"] == 3
  assert counts["labels"] == {"neutral": 1, "happy": 2, "angry": 1, "sad": 1}
  assert rows["Ses01F_impro01_M000"].label == "happy"  # excited merged into happy
  assert rows["Ses01F_impro01_M000"].speaker == "Ses01M"
  assert rows["Ses02M_script01_1_F000"].speaker == "Ses02F"
  assert rows["Ses02M_script01_1_F000"].split == "session2"
  assert rows["Ses01F_impro01_F000"].text == "words of Ses01F_impro01_F000."
  reasons = sorted(json.loads(l)["reason"] for l in open(tmp_path / "e.jsonl"))
  assert reasons[0].startswith("label 'fru'") and reasons[1].startswith("label 'xxx'")
  assert reasons[2].startswith("missing audio file")
  folds = emotion.iemocap_folds()
  assert folds["fold2"] == {"test": "session2", "train": ["session1", "session3", "session4",
                                                          "session5"]}
  with pytest.raises(FileNotFoundError, match="Session1"):
    list(emotion.iemocap_rows(str(tmp_path)))


# ---------------------------------------------------------------------------------------------------
# CREMA-D.


def test_crema_d_speaker_independent_split_whether_or_not_tfds_is_importable(tmp_path, monkeypatch):
  root = str(tmp_path / "CREMA-D")
  make_crema_d(root)
  rows, rejected = split_rows(emotion.crema_d_rows(root, seed=0))  # split=actor_seeded, the default
  assert len(rows) == 20 and len(rejected) == 1 and "BOR" in rejected[0].utt_id
  by_split = {}
  for r in rows:
    by_split.setdefault(r.split, set()).add(r.speaker)
  assert {k: len(v) for k, v in by_split.items()} == {"train": 7, "validation": 1, "test": 2}
  assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["validation"])
  r = next(r for r in rows if r.utt_id == "1003_DFA_ANG_XX")
  assert r.label == "anger" and r.text == "Don't forget a jacket." and r.speaker == "1003"
  import sys
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as on a machine without it
  with pytest.raises(ImportError):
    import tensorflow_datasets  # noqa: F401
  again, _ = split_rows(emotion.crema_d_rows(root, seed=0, split="actor_seeded"))
  assert [(r.utt_id, r.split) for r in again] == [(r.utt_id, r.split) for r in rows]  # seeded, tfds or not
  with pytest.raises(ImportError, match="tensorflow-datasets"):
    list(emotion.crema_d_rows(root, split="tfds", export_dir=str(tmp_path / "x")))
  other, _ = split_rows(emotion.crema_d_rows(root, seed=1))
  assert [r.split for r in other] != [r.split for r in rows]
  with pytest.raises(ValueError, match="manifest.split"):
    list(emotion.crema_d_rows(root, split="random"))


# ---------------------------------------------------------------------------------------------------
# Generic corpora.


def test_folder_rows_labels_and_segments(tmp_path):
  write_wav(str(tmp_path / "c" / "happy" / "a.wav"), seconds=0.5)
  write_wav(str(tmp_path / "c" / "sad" / "deep" / "b.flac"), seconds=2.5)
  open(tmp_path / "c" / "notes.txt", "w").write("ignored")
  rows, _ = split_rows(generic.folder_rows(str(tmp_path / "c"), label_from_parent=True))
  assert [(r.utt_id, r.label) for r in rows] == [("happy/a", "happy"), ("sad/deep/b", "deep")]
  segs, _ = split_rows(generic.folder_rows(str(tmp_path / "c"), segment_seconds=1.0))
  assert [(r.utt_id, r.offset, r.duration) for r in segs] == [
      ("happy/a_0000", 0.0, 0.5), ("sad/deep/b_0000", 0.0, 1.0), ("sad/deep/b_0001", 1.0, 1.0)]
  with pytest.raises(FileNotFoundError):
    list(generic.folder_rows(str(tmp_path / "empty_dir_that_is_not_there")))


def test_list_rows_csv_and_jsonl(tmp_path):
  write_wav(str(tmp_path / "audio" / "x.wav"))
  with open(tmp_path / "list.csv", "w", newline="") as f:
    w = csv.DictWriter(f, ["utt_id", "audio", "label", "offset", "split"])
    w.writeheader()
    w.writerow({"utt_id": "x1", "audio": "audio/x.wav", "label": "angry", "offset": "0.1"})
    w.writerow({"utt_id": "x2", "audio": "", "label": "", "offset": ""})
    w.writerow({"utt_id": "x3", "audio": "audio/x.wav", "label": "", "offset": "soon"})
  rows, rejected = split_rows(corpora.rows({"adapter": "list", "root": str(tmp_path / "list.csv"),
                                             "split": "test"}))
  assert len(rows) == 1 and rows[0].audio == str(tmp_path / "audio" / "x.wav")
  assert rows[0].offset == 0.1 and rows[0].label == "angry" and rows[0].split == "test"
  assert "no 'audio'" in rejected[0].reason and "offset" in rejected[1].reason
  (tmp_path / "list.jsonl").write_text('{"audio": "audio/x.wav", "speaker": "s"}\n{oops\n')
  rows, rejected = split_rows(generic.list_rows(str(tmp_path / "list.jsonl")))
  assert rows[0].utt_id == "x" and rows[0].speaker == "s" and "not JSON" in rejected[0].reason


def test_condensed_movies_clips_metadata_and_windows(tmp_path):
  av = pytest.importorskip("av")
  root = tmp_path / "cm"
  os.makedirs(root / "videos" / "2019")
  os.makedirs(root / "metadata")
  sr = 48000
  x = (0.5 * np.sin(2 * np.pi * 300 * np.arange(int(2.5 * sr)) / sr)).astype(np.float32)
  write_audio_container(av, str(root / "videos" / "2019" / "vid123.mp4"), x, sr)
  with open(root / "metadata" / "clips.csv", "w", newline="") as f:
    w = csv.DictWriter(f, ["videoid", "imdbid", "clip_name", "upload_year"])
    w.writeheader()
    w.writerow({"videoid": "vid123", "imdbid": "tt0001", "clip_name": "A scene", "upload_year": "2019"})
  rows, rejected = split_rows(corpora.rows({"adapter": "condensed_movies", "root": str(root),
                                             "segment_seconds": 1.0}))
  assert not rejected and [r.utt_id for r in rows] == ["vid123_0000", "vid123_0001"]
  assert rows[1].speaker == "tt0001" and rows[1].extra["clip_name"] == "A scene"
  a = decode.load(rows[1].audio, rows[1].offset, rows[1].duration)
  assert abs(a.duration - 1.0) < 0.03
