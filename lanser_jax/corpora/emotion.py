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
                TFDS stores no clip names, so each example's name is recovered from the download
                folder (`tfds_clip_names`): utt_ids are CREMA-D's own ("1001_DFA_ANG_XX"), as in the
                other splits and EmoBox's lists.
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
                 export_dir: str | None = None, download_dir: str | None = None
                 ) -> Iterator[manifests.Row | manifests.RejectedRow]:
  if split not in CREMA_D_SPLITS:
    raise ValueError(f"crema_d: manifest.split={split!r}: expected one of {CREMA_D_SPLITS}")
  if split == "tfds":
    yield from crema_d_tfds_rows(tfds_data_dir, export_dir, download_dir)
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


def tfds_clip_names(split: str, speakers: Sequence[str], download_dir: str) -> list[str] | None:
  """The clip names of TFDS crema_d's `split`, in the order the split is read (None: not recoverable).

  TFDS's crema_d builder keys each example by its clip name and writes a split sorted by the md5 of
  (split name, key) (tensorflow_datasets.core.hashing, the writer's shuffle), without the key. The names it
  used are those of the WAV files it downloaded, which `tfds build` leaves in its download folder with an
  .INFO file naming each URL; the split's names are those of its speakers (TFDS splits by actor), sorted as
  the writer sorted them. The caller checks every name against the example's own speaker and label.
  """
  import json
  from tensorflow_datasets.audio import crema_d as tfds_crema_d
  from tensorflow_datasets.core import hashing
  names = set()
  infos = glob.glob(os.path.join(download_dir, "*.INFO")) + glob.glob(os.path.join(download_dir, "*", "*.INFO"))
  for info in infos:  # `tfds build` writes to downloads/ or downloads/crema_d/, by version
    try:
      with open(info, encoding="utf-8") as f:
        urls = json.load(f).get("urls", [])
    except (OSError, ValueError):
      continue
    for url in urls:
      if url.startswith(tfds_crema_d.WAV_DATA_URL) and url.endswith(".wav"):
        names.add(url[len(tfds_crema_d.WAV_DATA_URL):-len(".wav")])
  if not names:
    return None
  speakers = set(speakers)
  hasher = hashing.Hasher(split)
  return sorted((n for n in names if n.split("_")[0] in speakers), key=hasher.hash_key)


def crema_d_tfds_rows(data_dir: str | None, export_dir: str | None, download_dir: str | None = None
                      ) -> Iterator[manifests.Row | manifests.RejectedRow]:
  """TFDS crema_d (prepared under `data_dir`) exported to 16-bit WAV files, keeping its splits.

  Each example gets its CREMA-D clip name (`tfds_clip_names`, from `download_dir`, by default
  <data_dir>/downloads, where `tfds build` leaves it); without that folder the rows are named
  crema_d_<split>_<index> and a warning says how to keep the names. A clip that cannot be exported (no
  samples, samples outside the 16-bit range, a label outside the six) is a RejectedRow with its reason, so
  the manifest summary accounts for every TFDS example.
  """
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise ImportError("crema_d split=tfds needs tensorflow-datasets (pip install 'lanser-jax[label]')") from e
  import soundfile
  if not export_dir:
    raise ValueError("crema_d split=tfds needs manifest.export_dir for the exported WAV files")
  import logging
  builder = tfds.builder("crema_d", data_dir=data_dir or None)
  names = builder.info.features["label"].names
  rate = int(builder.info.features["audio"].sample_rate or 16000)
  # builder.data_dir is <data_dir>/crema_d/<version>; `tfds build` downloads to <data_dir>/downloads.
  download_dir = download_dir or os.path.join(
      data_dir or os.path.dirname(os.path.dirname(builder.data_dir)), "downloads")
  for split in ("train", "validation", "test"):
    try:
      ds = builder.as_dataset(split=split, shuffle_files=False)
    except Exception as e:  # DatasetNotFoundError and kin: say what to do, not only what failed
      raise FileNotFoundError(
          f"tensorflow-datasets crema_d is not prepared under data_dir={data_dir or '~/tensorflow_datasets'!r}"
          f" ({type(e).__name__}: {str(e)[:200]}); run `tfds build crema_d --data_dir=...` first, or choose "
          "manifest.split=actor_seeded with the AudioWAV folder") from e
    speaker_of = lambda ex: (ex["speaker_id"].decode() if isinstance(ex["speaker_id"], bytes)
                             else str(ex["speaker_id"]))
    # A first pass over the speakers only (the audio left encoded): which clips the split holds.
    heads = builder.as_dataset(split=split, shuffle_files=False, decoders={"audio": tfds.decode.SkipDecoding()})
    speakers = [speaker_of(ex) for ex in tfds.as_numpy(heads)]
    clips = tfds_clip_names(split, speakers, download_dir)
    if clips is None:
      logging.warning("crema_d split=tfds: no downloaded CREMA-D clips listed under %s (its *.INFO files), so "
                      "the %s rows are named crema_d_%s_<index>, without actor/sentence/emotion/level; keep "
                      "the folder `tfds build` downloads to, or set manifest.download_dir to it", download_dir,
                      split, split)
    elif len(clips) != len(speakers):
      raise ValueError(f"{download_dir}: lists {len(clips)} CREMA-D clips of the {split} split's speakers, but "
                       f"TFDS crema_d {split} has {len(speakers)} examples; point manifest.download_dir at the "
                       "download folder of this build")
    os.makedirs(os.path.join(export_dir, split), exist_ok=True)
    for i, ex in enumerate(tfds.as_numpy(ds)):
      utt = clips[i] if clips else f"crema_d_{split}_{i:06d}"
      path = os.path.join(export_dir, split, f"{utt}.wav")
      where = f"tfds crema_d {split}[{i}]"
      label_index = int(ex["label"])
      if not 0 <= label_index < len(names) or names[label_index].upper()[:3] not in CREMA_D_LABELS:
        yield manifests.RejectedRow(utt, where, f"label index {label_index} is none of {names}")
        continue
      m = _CREMA_NAME.match(utt + ".wav") if clips else None
      if clips and (not m or m["actor"] != speaker_of(ex) or m["emo"] != names[label_index].upper()[:3]):
        raise ValueError(f"{where}: the recovered clip name {utt!r} disagrees with the example (speaker "
                         f"{speaker_of(ex)}, label {names[label_index]}); the download folder {download_dir} "
                         "is not the one this build used: point manifest.download_dir at it")
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
      extra = {"tfds_index": i}
      if m:
        extra.update(sentence=m["sentence"], intensity=m["level"])
      yield manifests.Row(utt, os.path.abspath(path), speaker=speaker_of(ex),
                          label=CREMA_D_LABELS[names[label_index].upper()[:3]], split=split,
                          text=CREMA_D_SENTENCES.get(m["sentence"]) if m else None, extra=extra)
