"""CREMA-D's split=tfds as installed: the real TFDS `crema_d` builder prepares a small fake CREMA-D offline
(its download manager fetches each CREMA-D URL from a local folder; checksums, .INFO files and the writer
are TFDS's own), then the manifest and features stages run on it, and every record keeps its clip name."""

import hashlib
import os

import numpy as np
import pytest
import soundfile

from lanser_jax import config_lib
from lanser_jax.stages import chain

SR = 16000
CLIPS = [f"{actor}_{sentence}_{emotion}_{level}"
         for actor in range(1001, 1021)  # 20 actors: TFDS's 70/10/20 gives 14/1/5 (10 would leave validation empty)
         for sentence, emotion, level in (("DFA", "ANG", "HI"), ("TSI", "SAD", "LO"))]


def clip_audio(k: int) -> np.ndarray:
  """A clip whose samples say which clip it is (its own pitch and length)."""
  t = np.arange(int(SR * (0.3 + 0.005 * k))) / SR
  return (8000 * np.sin(2 * np.pi * (200 + 15 * k) * t)).astype(np.int16)


def fake_crema_d_download(root: str) -> dict[str, str]:
  """Local files for the URLs the builder downloads: the summary table, each clip, and the checksum list."""
  from tensorflow_datasets.audio import crema_d
  files = {}
  os.makedirs(root)
  table = os.path.join(root, "summaryTable.csv")
  with open(table, "w") as f:
    f.write('"","FileName","VoiceVote","VoiceLevel"\n')
    f.writelines(f'"{k + 1}","{name}","x","1"\n' for k, name in enumerate(CLIPS))
  files[crema_d.SUMMARY_TABLE_URL] = table
  for k, name in enumerate(CLIPS):
    path = os.path.join(root, "AudioWAV", f"{name}.wav")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, clip_audio(k), SR, subtype="PCM_16")
    files[crema_d.WAV_DATA_URL + f"{name}.wav"] = path
  checksums = os.path.join(root, "crema_d.txt")
  with open(checksums, "w") as f:
    for url, path in files.items():
      data = open(path, "rb").read()
      f.write(f"{url}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\n")
  files[crema_d._CHECKSUMS_URL] = checksums  # noqa: SLF001 -- the builder's own constant
  return files


@pytest.mark.slow
def test_tfds_crema_d_prepares_offline_and_keeps_clip_names(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  for needed in ("importlib_resources", "pydub"):  # what `tfds build crema_d` imports: the `label` extra
    pytest.importorskip(needed, reason=f"pip install 'lanser-jax[label]' (installs {needed})")
  from tensorflow_datasets.core.download import downloader
  local = fake_crema_d_download(str(tmp_path / "crema_d_upstream"))

  def from_local_folder(self, url, destination_path, verify=True):
    return self._sync_file_copy(local[url], destination_path)  # noqa: SLF001
  monkeypatch.setattr(downloader._Downloader, "_sync_download", from_local_folder)  # noqa: SLF001
  # The package registers the real checksum list's own checksum; the fake list brings its own checksums.
  from tensorflow_datasets.audio import crema_d
  from tensorflow_datasets.core.download import checksums
  monkeypatch.setattr(crema_d.CremaD, "url_infos", None)
  monkeypatch.setattr(checksums, "get_all_url_infos", dict)
  data_dir = str(tmp_path / "tfds")
  tfds.builder("crema_d", data_dir=data_dir).download_and_prepare()

  config = config_lib.load_experiment("lanser_jax/experiments/labeling/crema_d.py:split=tfds")
  config.manifest.update(tfds_data_dir=data_dir, export_dir=str(tmp_path / "wav"))
  config.num_pieces = 2
  workdir = str(tmp_path / "work")
  summary = chain.run_stages(config, workdir, "all", (0, 1))
  assert summary["in"] == len(CLIPS) and summary["written"] == len(CLIPS) and summary["balanced"]

  from stage_helpers import read_records
  by_split = {s: read_records(os.path.join(workdir, "features"), s) for s in ("train", "validation", "test")}
  names = sorted(u for recs in by_split.values() for u in recs)
  assert names == sorted(CLIPS)  # CREMA-D's own names, not crema_d_<split>_<index>
  # TFDS's speaker-independent 70/10/20 over the actors, kept as it is.
  actors = {s: {u.split("_")[0] for u in recs} for s, recs in by_split.items()}
  assert [len(actors[s]) for s in ("train", "validation", "test")] == [14, 1, 5]
  # Each name is the right one: the exported clip named X holds X's samples, and its label is X's emotion.
  from lanser_jax.corpora import emotion
  classes = list(emotion.CREMA_D_CLASSES)
  for split, recs in by_split.items():
    for utt, ex in recs.items():
      exported, _ = soundfile.read(os.path.join(str(tmp_path / "wav"), split, f"{utt}.wav"), dtype="int16")
      np.testing.assert_array_equal(exported, clip_audio(CLIPS.index(utt)))
      assert classes[ex.label] == emotion.CREMA_D_LABELS[utt.split("_")[2]]

  # Without the download folder the rows keep TFDS's order under positional names, and a warning says so.
  rows = list(emotion.crema_d_tfds_rows(data_dir, str(tmp_path / "wav2"), download_dir=str(tmp_path / "none")))
  assert sorted(r.utt_id for r in rows)[0] == "crema_d_test_000000" and len(rows) == len(CLIPS)
