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

CREMA-D: tensorflow-datasets `crema_d` when it is installed and prepared (it needs a manual
download, so offline this falls back), else a local `AudioWAV/` folder whose names
"1001_DFA_ANG_XX.wav" hold actor, sentence, emotion and intensity. The split is speaker-independent
70/10/20 over actors, drawn with a seed.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from typing import Iterator, Sequence

import numpy as np

from input_pipeline import manifests

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


def crema_d_rows(root: str | None = None, seed: int = 0, fractions=(0.7, 0.1, 0.2),
                 use_tfds: bool = True, tfds_data_dir: str | None = None,
                 export_dir: str | None = None) -> Iterator[manifests.Row | manifests.RejectedRow]:
  if use_tfds:
    try:
      yield from _crema_d_tfds(tfds_data_dir, export_dir)
      return
    except Exception as e:  # not installed, not prepared, or offline: the local folder is next
      logging.warning("tensorflow-datasets crema_d unavailable (%s: %s); reading %s instead",
                      type(e).__name__, str(e)[:200], root)
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


def _crema_d_tfds(data_dir: str | None, export_dir: str | None):
  """Exports TFDS crema_d (already prepared under `data_dir`) to WAV files, keeping its splits."""
  import tensorflow_datasets as tfds  # not a dependency; absent offline
  import soundfile
  builder = tfds.builder("crema_d", data_dir=data_dir or None)
  if not export_dir:
    raise ValueError("crema_d via tfds needs manifest.export_dir for the exported WAV files")
  names = builder.info.features["label"].names
  rows = []
  for split in ("train", "validation", "test"):
    ds = builder.as_dataset(split=split)  # raises if the dataset has not been prepared
    os.makedirs(os.path.join(export_dir, split), exist_ok=True)
    for i, ex in enumerate(tfds.as_numpy(ds)):
      path = os.path.join(export_dir, split, f"{split}_{i:06d}.wav")
      if not os.path.exists(path):
        soundfile.write(path, ex["audio"], 16000)
      speaker = ex.get("speaker_id", b"")
      speaker = speaker.decode() if isinstance(speaker, bytes) else str(speaker)
      label = CREMA_D_LABELS.get(names[int(ex["label"])].upper()[:3], names[int(ex["label"])])
      rows.append(manifests.Row(f"crema_d_{split}_{i:06d}", os.path.abspath(path),
                                speaker=speaker, label=label, split=split))
  yield from rows
