"""The labelled fine-tuning corpora: IEMOCAP and CREMA-D.

IEMOCAP (release folder `IEMOCAP_full_release/`):
  SessionK/sentences/wav/<dialog>/<utt>.wav
  SessionK/dialog/EmoEvaluation/<dialog>.txt      "[start - end]\t<utt>\t<emo>\t[v, a, d]"
  SessionK/dialog/transcriptions/<dialog>.txt     "<utt> [start-end]: text"
  Four classes as in most SER papers: neutral, happy (with excited merged in), sad, angry; other
  labels are rejected with the reason "label 'fru' not in the 4-class set", so they are counted in
  the manifest summary. split = "sessionK": fold K of leave-one-session-out tests on sessionK and
  trains on the other four. speaker = session + the speaker's gender ("Ses01F"), as utterance ids
  end in _F000/_M000.

CREMA-D: the split is a config choice (`split`), never a consequence of what is installed:
  actor_seeded  (default) the local `AudioWAV/` folder, whose names "1001_DFA_ANG_XX.wav" hold actor,
                sentence, emotion and intensity; speaker-independent 70/10/20 over actors, seeded.
  tfds          tensorflow-datasets `crema_d` (prepared under tfds_data_dir with `tfds build crema_d`,
                which downloads the clips from the CREMA-D GitHub repository), keeping TFDS's own
                speaker-independent train/validation/test; its clips are exported to WAV files under
                export_dir (written once, temp name then renamed, so an interrupted export resumes).
  emobox        the local folder's rows, as actor_seeded; the features stage then applies EmoBox's
                fold list (lanser_jax/corpora/protocols.py, features.protocol), so one manifest serves both.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Iterator, Sequence

import numpy as np

from lanser_jax.corpora import manifests
from lanser_jax.utils import fileio

IEMOCAP_LABELS = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
IEMOCAP_CLASSES = ("neutral", "happy", "sad", "angry")
_EMO_LINE = re.compile(r"^\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\t(?P<utt>\S+)\t(?P<emo>\S+)\t")
_TRANSCRIPT_LINE = re.compile(r"^(?P<utt>Ses\S+) \[[\d.]+-[\d.]+\]:\s*(?P<text>.*)$")


def iemocap_rows(root: str, sessions: Sequence[int] = (1, 2, 3, 4, 5),
                 merge_excited: bool = True) -> Iterator[manifests.Row | manifests.RejectedRow]:
  label_map = dict(IEMOCAP_LABELS)
  if not merge_excited:
    del label_map["exc"]
  found = False
  for k in sessions:
    sdir = os.path.join(root, f"Session{k}")
    if not os.path.isdir(sdir):
      continue
    found = True
    texts = {}
    for path in sorted(glob.glob(os.path.join(sdir, "dialog", "transcriptions", "*.txt"))):
      with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
          m = _TRANSCRIPT_LINE.match(line.strip())
          if m:
            texts[m["utt"]] = m["text"].strip()
    for path in sorted(glob.glob(os.path.join(sdir, "dialog", "EmoEvaluation", "*.txt"))):
      dialog = os.path.splitext(os.path.basename(path))[0]
      with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
          m = _EMO_LINE.match(line)
          if not m:
            continue
          utt, emo = m["utt"], m["emo"]
          wav = os.path.join(sdir, "sentences", "wav", dialog, utt + ".wav")
          if emo not in label_map:
            yield manifests.RejectedRow(utt, wav, f"label {emo!r} not in the 4-class set")
            continue
          if not os.path.exists(wav):
            yield manifests.RejectedRow(utt, wav, f"missing audio file: {wav}")
            continue
          gender = utt.split("_")[-1][:1]
          yield manifests.Row(
              utt_id=utt, audio=os.path.abspath(wav), speaker=f"Ses{k:02d}{gender}",
              label=label_map[emo], text=texts.get(utt), split=f"session{k}",
              extra={"session": k, "dialog": dialog, "emotion_code": emo,
                     "improvised": "impro" in dialog})
  if not found:
    raise FileNotFoundError(f"{root}: no Session1..Session5 folders (expected the IEMOCAP release)")


def iemocap_folds(sessions: Sequence[int] = (1, 2, 3, 4, 5)) -> dict[str, dict]:
  """Leave-one-session-out folds over the split names, for dataset.json."""
  return {f"fold{k}": {"test": f"session{k}",
                       "train": [f"session{j}" for j in sessions if j != k]} for k in sessions}


# ---------------------------------------------------------------------------------------------------
# CREMA-D.

CREMA_D_LABELS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy",
                  "NEU": "neutral", "SAD": "sad"}
CREMA_D_CLASSES = ("anger", "disgust", "fear", "happy", "neutral", "sad")
CREMA_D_SENTENCES = {
    "IEO": "It's eleven o'clock.", "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.", "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.", "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.", "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.", "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.", "WSI": "We'll stop in a couple of minutes."}
_CREMA_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emo>[A-Z]{3})_"
                         r"(?P<level>[A-Z]{2})\.wav$")


def speaker_splits(speakers: Sequence[str], fractions: Sequence[float], names: Sequence[str],
                   seed: int) -> dict[str, str]:
  """Speaker -> split, speaker-independent: each speaker's utterances all go to one split."""
  speakers = sorted(set(speakers))
  order = np.random.default_rng(seed).permutation(len(speakers))
  bounds = np.round(np.cumsum(fractions) / np.sum(fractions) * len(speakers)).astype(int)
  out = {}
  for rank, i in enumerate(order):
    out[speakers[i]] = names[int(np.searchsorted(bounds, rank, side="right"))]
  return out


CREMA_D_SPLITS = ("actor_seeded", "tfds", "emobox")


def crema_d_rows(root: str | None = None, seed: int = 0, fractions=(0.7, 0.1, 0.2),
                 split: str = "actor_seeded", tfds_data_dir: str | None = None,
                 export_dir: str | None = None) -> Iterator[manifests.Row | manifests.RejectedRow]:
  if split not in CREMA_D_SPLITS:
    raise ValueError(f"crema_d: manifest.split={split!r}: expected one of {CREMA_D_SPLITS}")
  if split == "tfds":
    yield from crema_d_tfds_rows(tfds_data_dir, export_dir)
    return
  if root is None:
    raise ValueError("crema_d: set manifest.root to the folder holding AudioWAV/")
  wav_dir = os.path.join(root, "AudioWAV") if os.path.isdir(os.path.join(root, "AudioWAV")) else root
  paths = sorted(glob.glob(os.path.join(wav_dir, "*.wav")))
  if not paths:
    raise FileNotFoundError(f"{wav_dir}: no .wav files (expected CREMA-D AudioWAV/)")
  parsed = []
  for path in paths:
    m = _CREMA_NAME.match(os.path.basename(path))
    if not m or m["emo"] not in CREMA_D_LABELS:
      yield manifests.RejectedRow(os.path.basename(path), path,
                                  "file name is not ACTOR_SENTENCE_EMOTION_LEVEL.wav with a "
                                  "known emotion (ANG/DIS/FEA/HAP/NEU/SAD)")
      continue
    parsed.append((path, m))
  split_of = speaker_splits([m["actor"] for _, m in parsed], fractions,
                            ("train", "validation", "test"), seed)
  for path, m in parsed:
    yield manifests.Row(
        utt_id=os.path.splitext(os.path.basename(path))[0], audio=os.path.abspath(path),
        speaker=m["actor"], label=CREMA_D_LABELS[m["emo"]],
        text=CREMA_D_SENTENCES.get(m["sentence"]), split=split_of[m["actor"]],
        extra={"sentence": m["sentence"], "intensity": m["level"]})


def crema_d_tfds_rows(data_dir: str | None, export_dir: str | None
                      ) -> Iterator[manifests.Row | manifests.RejectedRow]:
  """TFDS crema_d (prepared under `data_dir`) exported to 16-bit WAV files, keeping its splits.

  A clip that cannot be exported (no samples, samples outside the 16-bit range, a label outside the six)
  is a RejectedRow with its reason, so the manifest summary accounts for every TFDS example.
  """
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise ImportError("crema_d split=tfds needs tensorflow-datasets (pip install 'lanser-jax[label]')") from e
  import soundfile
  if not export_dir:
    raise ValueError("crema_d split=tfds needs manifest.export_dir for the exported WAV files")
  builder = tfds.builder("crema_d", data_dir=data_dir or None)
  names = builder.info.features["label"].names
  rate = int(builder.info.features["audio"].sample_rate or 16000)
  for split in ("train", "validation", "test"):
    try:
      ds = builder.as_dataset(split=split, shuffle_files=False)
    except Exception as e:  # DatasetNotFoundError and kin: say what to do, not only what failed
      raise FileNotFoundError(
          f"tensorflow-datasets crema_d is not prepared under data_dir={data_dir or '~/tensorflow_datasets'!r}"
          f" ({type(e).__name__}: {str(e)[:200]}); run `tfds build crema_d --data_dir=...` first, or choose "
          "manifest.split=actor_seeded with the AudioWAV folder") from e
    os.makedirs(os.path.join(export_dir, split), exist_ok=True)
    for i, ex in enumerate(tfds.as_numpy(ds)):
      utt = f"crema_d_{split}_{i:06d}"
      path = os.path.join(export_dir, split, f"{utt}.wav")
      where = f"tfds crema_d {split}[{i}]"
      label_index = int(ex["label"])
      if not 0 <= label_index < len(names) or names[label_index].upper()[:3] not in CREMA_D_LABELS:
        yield manifests.RejectedRow(utt, where, f"label index {label_index} is none of {names}")
        continue
      samples = np.asarray(ex["audio"])
      if samples.size == 0:
        yield manifests.RejectedRow(utt, where, "no audio samples")
        continue
      if np.issubdtype(samples.dtype, np.integer):
        if samples.min() < -32768 or samples.max() > 32767:
          yield manifests.RejectedRow(utt, where, f"samples outside the 16-bit range "
                                                  f"[{samples.min()}, {samples.max()}]")
          continue
        samples = samples.astype(np.int16)
      if not os.path.exists(path):
        with fileio.atomic_write(path, "wb") as f:
          soundfile.write(f, samples, rate, subtype="PCM_16", format="WAV")
      speaker = ex.get("speaker_id", b"")
      speaker = speaker.decode() if isinstance(speaker, bytes) else str(speaker)
      yield manifests.Row(utt, os.path.abspath(path), speaker=speaker,
                          label=CREMA_D_LABELS[names[label_index].upper()[:3]], split=split,
                          extra={"tfds_index": i})
