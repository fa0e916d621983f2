"""Builds the demo's emotional speech with eSpeak NG: an unlabelled pre-training corpus and labelled ones.

No recorded emotional speech installs offline, so the end-to-end demo speaks its own:
  * pretrain: sentences whose *words* carry one of the seven Ekman emotions, spoken with that emotion's
    prosody with probability `p_match` (else another emotion's), so that weak labels inferred from the
    transcripts predict the prosody most of the time, as they do for real speech. label = null.
  * labelled: a dozen neutral sentences, each spoken by every voice in each CREMA-D emotion through prosody
    alone, split train/validation/test by voice (speaker-independent), as CREMA-D is used.
  * list: a small labelled corpus as a user brings one (by default 6 voices x 5 sentences x angry, happy,
    neutral, sad = 120 clips), plus list.csv with the columns path,label,speaker and no splits: the input of
    lanser_jax/experiments/labeling/custom.py (docs/corpora.md, "Your own corpus in three commands").
Each corpus is a folder: wavs/*.wav (16 kHz mono float32), manifest.jsonl (the shared manifest format, audio
paths relative to the folder), errors.jsonl (utterances that could not be made, with the reason) and
corpus.json (the settings and a summary). Everything follows from the seed: the plan (texts, voices, prosody)
is drawn up front, and each utterance's audio depends only on its own plan entry.

  lanser-demo-corpus --out=/tmp/demo/pretrain --which=pretrain --num=2000 --seed=0
  lanser-demo-corpus --out=/tmp/demo/labelled --which=labelled --seed=0
  lanser-demo-corpus --out=/tmp/my_corpus --which=list [--emotions=angry,happy,neutral,sad --sentences=5]
  (or python -m lanser_jax.demo.corpus ...)
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import re
import sys
import time
from importlib import resources
from typing import Any, Sequence

from absl import app, flags
import numpy as np
import soundfile
from scipy.io import wavfile

from lanser_jax.utils import cli, fileio
from lanser_jax.utils import progress as progress_lib
from lanser_jax.demo import espeak

EKMAN_EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
CREMAD_EMOTIONS = ("anger", "disgust", "fear", "happy", "neutral", "sad")
_CREMAD_TO_EKMAN = {"happy": "happiness", "sad": "sadness"}
_CREMAD_CODE = {"anger": "ANG", "disgust": "DIS", "fear": "FEA", "happy": "HAP", "neutral": "NEU", "sad": "SAD"}

# Prosody per emotion, in eSpeak NG units; documented (with the reasons) in PROSODY.md. Volumes stay below
# eSpeak NG's default (100) so that the loudest, angry utterances do not clip.
PROFILES: dict[str, espeak.Prosody] = {
    "neutral": espeak.Prosody(rate=165, pitch=45, pitch_range=40, volume=60, word_gap=0),
    "anger": espeak.Prosody(rate=205, pitch=55, pitch_range=90, volume=100, word_gap=0),
    "disgust": espeak.Prosody(rate=140, pitch=25, pitch_range=60, volume=70, word_gap=1),
    "fear": espeak.Prosody(rate=220, pitch=80, pitch_range=15, volume=50, word_gap=0),
    "happiness": espeak.Prosody(rate=195, pitch=72, pitch_range=85, volume=75, word_gap=0),
    "sadness": espeak.Prosody(rate=120, pitch=20, pitch_range=10, volume=33, word_gap=0),
    "surprise": espeak.Prosody(rate=180, pitch=90, pitch_range=100, volume=85, word_gap=0),
}
# Per-utterance jitter: relative (rate, volume) or absolute (pitch, range) standard deviations.
JITTER = {"rate": 0.06, "pitch": 4.0, "pitch_range": 6.0, "volume": 0.08}

# Six English accents x voice variants that exist in espeakng-loader 0.2.4's data; six female, six male. The
# Scottish and Welsh (gbcwmd) voices were left out: Whisper tiny.en missed 45-50% of their words.
DEFAULT_VOICES = (
    "en-us", "en-us+f2", "en+m3", "en+f4", "en-us+m3", "en-us+f5", "en-029+m2", "en-029+f5",
    "en-gb-x-rp+m7", "en-us-nyc+f3", "en-gb-x-gbclan+m1", "en+f2",
)
# A list corpus's labels: a profile's own name, or one of these everyday names of it.
LIST_LABELS = {"angry": "anger", "happy": "happiness", "sad": "sadness", "fearful": "fear", "disgusted": "disgust",
               "surprised": "surprise"}
LIST_EMOTIONS = ("angry", "happy", "neutral", "sad")
LIST_VOICES = DEFAULT_VOICES[:6]  # three female, three male
LIST_SENTENCES = 5
SAMPLE_RATE = espeak.SAMPLE_RATE
_LOG_EVERY_S = 2.0
_MIN_TASKS_FOR_POOL = 64  # below this, starting worker processes (~2 s each) costs more than it saves


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One planned utterance: everything its audio and manifest row depend on."""
  utt_id: str
  text: str
  voice: str
  prosody: espeak.Prosody
  seed: int
  row: dict[str, Any]  # manifest keys besides utt_id/audio/offset/duration/speaker/text


def speaker_id(voice: str) -> str:
  """A file-name-safe speaker id for an eSpeak NG voice name ('en-us+f2' -> 'en-us-f2')."""
  return re.sub(r"[^A-Za-z0-9-]", "-", voice)


def jittered(profile: espeak.Prosody, rng: np.random.Generator) -> espeak.Prosody:
  """`profile` with per-utterance variation, so that no two utterances of an emotion sound the same."""
  z = rng.standard_normal(4)
  return espeak.Prosody(
      rate=profile.rate * (1 + JITTER["rate"] * z[0]), pitch=profile.pitch + JITTER["pitch"] * z[1],
      pitch_range=profile.pitch_range + JITTER["pitch_range"] * z[2],
      volume=profile.volume * (1 + JITTER["volume"] * z[3]), word_gap=profile.word_gap).clipped()


# ---------------------------------------------------------------------------------------------- sentences
def load_templates() -> dict[str, Any]:
  return json.loads((resources.files("lanser_jax.demo") / "sentences" / "pretrain.json").read_text("utf-8"))


def load_labelled_sentences() -> list[tuple[str, str]]:
  """(code, sentence) pairs of the neutral sentences of the labelled corpus."""
  text = (resources.files("lanser_jax.demo") / "sentences" / "labelled.txt").read_text("utf-8")
  pairs = []
  for line in text.splitlines():
    line = line.strip()
    if line and not line.startswith("#"):
      code, sentence = line.split("|", 1)
      pairs.append((code.strip(), sentence.strip()))
  return pairs


def fill_template(template: str, slots: dict[str, Sequence[str]], rng: np.random.Generator) -> str:
  """Fills each {slot}; '{food2}' draws from 'food' but never repeats the word drawn for '{food}'."""
  chosen: dict[str, str] = {}
  for name in re.findall(r"\{(\w+)\}", template):
    if name in chosen:
      continue
    base = name.rstrip("0123456789")
    words = [w for w in slots[base] if w not in chosen.values()] if base != name else list(slots[base])
    chosen[name] = words[int(rng.integers(len(words)))]
  sentence = template.format(**chosen)
  # A slot that starts a sentence ('Wow! {person} ...') starts with a capital.
  return re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), sentence)


def count_sentences(templates: dict[str, Any]) -> dict[str, int]:
  """How many distinct sentences each emotion's templates can make (an upper bound; word overlaps aside)."""
  counts = {}
  for emotion, spec in templates["emotions"].items():
    slots = {**templates["shared"], **spec["slots"]}
    counts[emotion] = sum(
        int(np.prod([len(slots[n.rstrip("0123456789")]) for n in set(re.findall(r"\{(\w+)\}", t))]))
        for t in spec["templates"])
  return counts


# ---------------------------------------------------------------------------------------------- plans
def plan_pretrain(num_utterances: int, seed: int, voices: Sequence[str],
                  p_match: float = 0.8) -> list[Utterance]:
  """Balanced text emotions; prosody follows the text's emotion with probability `p_match`."""
  templates = load_templates()
  rng = np.random.default_rng([seed, 1])
  emotions = [EKMAN_EMOTIONS[i % len(EKMAN_EMOTIONS)] for i in range(num_utterances)]
  rng.shuffle(emotions)
  seen: set[str] = set()
  plan = []
  width = max(6, len(str(num_utterances - 1)))
  for i, text_emotion in enumerate(emotions):
    spec = templates["emotions"][text_emotion]
    slots = {**templates["shared"], **spec["slots"]}
    for _ in range(20):  # prefer a sentence not used yet; repeats are allowed once the supply runs low
      text = fill_template(spec["templates"][int(rng.integers(len(spec["templates"])))], slots, rng)
      if text not in seen:
        break
    seen.add(text)
    if rng.random() < p_match:
      prosody_emotion = text_emotion
    else:
      others = [e for e in EKMAN_EMOTIONS if e != text_emotion]
      prosody_emotion = others[int(rng.integers(len(others)))]
    voice = voices[int(rng.integers(len(voices)))]
    prosody = jittered(PROFILES[prosody_emotion], rng)
    utt_id = f"pt{i:0{width}d}"
    plan.append(Utterance(utt_id=utt_id, text=text, voice=voice, prosody=prosody,
                          seed=int(rng.integers(2**31 - 1)),
                          row={"label": None, "split": None, "text_emotion": text_emotion,
                               "prosody_emotion": prosody_emotion}))
  return plan


def split_voices(voices: Sequence[str], seed: int, validation: int, test: int) -> dict[str, str]:
  """voice -> split, drawn from the seed; every split gets at least one voice."""
  if len(voices) < 3 or validation < 1 or test < 1 or validation + test >= len(voices):
    raise ValueError(f"need >= 1 voice per split: {len(voices)} voices, {validation} validation, {test} test")
  order = list(voices)
  np.random.default_rng([seed, 2]).shuffle(order)
  return {v: ("test" if i < test else "validation" if i < test + validation else "train")
          for i, v in enumerate(order)}


def plan_labelled(seed: int, voices: Sequence[str], repeats: int = 1, validation_voices: int | None = None,
                  test_voices: int | None = None, num_sentences: int | None = None) -> list[Utterance]:
  """Every voice x sentence x CREMA-D emotion x repeat; the split is by voice (speaker-independent)."""
  sentences = load_labelled_sentences()[:num_sentences]
  n_held = max(1, round(len(voices) / 6))  # 12 voices -> 8 train, 2 validation, 2 test
  splits = split_voices(voices, seed, validation_voices or n_held, test_voices or n_held)
  rng = np.random.default_rng([seed, 3])
  plan = []
  for voice in voices:
    for code, sentence in sentences:
      for emotion in CREMAD_EMOTIONS:
        for take in range(repeats):
          prosody = jittered(PROFILES[_CREMAD_TO_EKMAN.get(emotion, emotion)], rng)
          utt_id = f"{speaker_id(voice)}_{code}_{_CREMAD_CODE[emotion]}_{take}"
          plan.append(Utterance(utt_id=utt_id, text=sentence, voice=voice, prosody=prosody,
                                seed=int(rng.integers(2**31 - 1)),
                                row={"label": emotion, "split": splits[voice], "sentence_id": code}))
  return plan


def list_profile(label: str) -> str:
  """The prosody profile that speaks a list corpus's `label` ('angry' -> 'anger')."""
  profile = LIST_LABELS.get(label, label)
  if profile not in PROFILES:
    raise ValueError(f"emotion {label!r}: expected one of {sorted(PROFILES)} or {sorted(LIST_LABELS)}")
  return profile


def plan_list(seed: int, voices: Sequence[str], emotions: Sequence[str] = LIST_EMOTIONS,
              num_sentences: int = LIST_SENTENCES) -> list[Utterance]:
  """Every voice x sentence x emotion, with the emotion's prosody; no split (the user's protocol decides)."""
  sentences = load_labelled_sentences()[:num_sentences]
  if len(set(emotions)) != len(emotions) or not emotions:
    raise ValueError(f"emotions {list(emotions)}: need one or more, none repeated")
  profiles = [list_profile(e) for e in emotions]
  rng = np.random.default_rng([seed, 4])
  plan = []
  for voice in voices:
    for code, sentence in sentences:
      for emotion, profile in zip(emotions, profiles):
        plan.append(Utterance(utt_id=f"{speaker_id(voice)}_{code}_{emotion}", text=sentence, voice=voice,
                              prosody=jittered(PROFILES[profile], rng), seed=int(rng.integers(2**31 - 1)),
                              row={"label": emotion, "split": None, "sentence_id": code}))
  return plan


# ---------------------------------------------------------------------------------------------- synthesis
def _synthesise_one(task: tuple[str, str, str, tuple[int, ...], int, str]) -> tuple[str, int, str | None]:
  """Speaks one utterance into its WAV (temp name, then rename); (utt_id, samples, error or None)."""
  utt_id, text, voice, prosody, seed, wav_path = task
  try:
    if os.path.exists(wav_path):  # a resumed build: WAVs are deterministic, so the old one is the new one
      try:
        return utt_id, soundfile.info(wav_path).frames, None
      except RuntimeError:  # unreadable (e.g. damaged on disk): make it again
        os.remove(wav_path)
    audio = espeak.synthesise(text, voice, espeak.Prosody(*prosody), seed)
    if audio.size == 0 or float(np.max(np.abs(audio))) < 1e-3:
      return utt_id, 0, f"eSpeak NG produced no audible speech for {text!r} ({voice})"
    # scipy's writer, not libsndfile's: the latter stamps float WAVs with the time (PEAK chunk).
    with fileio.atomic_write(wav_path, "wb") as f:
      wavfile.write(f, SAMPLE_RATE, audio.astype(np.float32))
    return utt_id, int(audio.size), None
  except Exception as e:  # pylint: disable=broad-except  # bad input is listed, never fatal
    return utt_id, 0, f"{type(e).__name__}: {e}"


def _build(out_dir: str, name: str, plan: list[Utterance], settings: dict[str, Any], num_workers: int) -> str:
  """Synthesises `plan` into `out_dir`; skips the work if a complete build with the same settings exists."""
  manifest_path = os.path.join(out_dir, "manifest.jsonl")
  info_path = os.path.join(out_dir, "corpus.json")
  if os.path.exists(info_path):
    with open(info_path, encoding="utf-8") as f:
      previous = json.load(f).get("settings")
    if previous != settings:
      raise ValueError(f"{out_dir} holds a {name} corpus built with other settings ({previous}); "
                       f"choose another folder or delete it")
    if os.path.exists(manifest_path):
      print(f"{name}: {manifest_path} is complete; nothing to do", file=sys.stderr)
      return manifest_path
  wav_dir = os.path.join(out_dir, "wavs")
  os.makedirs(wav_dir, exist_ok=True)
  fileio.write_text(info_path, json.dumps({"settings": settings}, indent=2) + "\n")

  tasks = [(u.utt_id, u.text, u.voice, dataclasses.astuple(u.prosody), u.seed,
            os.path.join(wav_dir, f"{u.utt_id}.wav")) for u in plan]
  progress = progress_lib.Progress(name, len(tasks), interval=_LOG_EVERY_S)
  start = time.monotonic()
  results = []
  if num_workers > 1 and len(tasks) >= _MIN_TASKS_FOR_POOL:
    # spawn, not fork: a caller may hold threads (JAX, TensorFlow) that fork would copy mid-state.
    with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
      for result in pool.imap(_synthesise_one, tasks, chunksize=16):
        results.append(result)
        progress.update()
  else:
    for task in tasks:
      results.append(_synthesise_one(task))
      progress.update()
  progress.close()
  seconds = time.monotonic() - start

  rows, errors = [], []
  for u, (utt_id, num_samples, error) in zip(plan, results):
    assert utt_id == u.utt_id
    if error is not None:
      errors.append({"utt_id": utt_id, "text": u.text, "voice": u.voice, "error": error})
      continue
    rows.append({"utt_id": utt_id, "audio": f"wavs/{utt_id}.wav", "offset": None,
                 "duration": round(num_samples / SAMPLE_RATE, 4), "speaker": speaker_id(u.voice),
                 "label": u.row["label"], "text": u.text, "split": u.row["split"],
                 **{k: v for k, v in u.row.items() if k not in ("label", "split")},
                 "voice": u.voice, "prosody": dataclasses.asdict(u.prosody)})
  audio_s = sum(r["duration"] for r in rows)
  summary = {"utterances": len(rows), "errors": len(errors), "audio_seconds": round(audio_s, 1),
             "build_seconds": round(seconds, 1),
             "utterances_per_second": round(len(results) / max(seconds, 1e-9), 1),
             "workers": num_workers, "labels": _counts(r["label"] for r in rows),
             "splits": _counts(r["split"] for r in rows)}
  fileio.write_text(os.path.join(out_dir, "errors.jsonl"), "".join(json.dumps(e) + "\n" for e in errors))
  fileio.write_text(info_path, json.dumps({"settings": settings, "summary": summary}, indent=2) + "\n")
  # The manifest goes last: its presence marks the build complete.
  fileio.write_text(manifest_path, "".join(json.dumps(r) + "\n" for r in rows))
  print(f"{name}: {len(rows)} utterances ({audio_s / 60:.1f} min of audio) in {seconds:.1f} s, "
        f"{summary['utterances_per_second']} utterances/s; {len(errors)} errors -> {out_dir}", file=sys.stderr)
  return manifest_path


def _counts(values) -> dict[str, int]:
  counts: dict[str, int] = {}
  for v in values:
    counts[str(v)] = counts.get(str(v), 0) + 1
  return dict(sorted(counts.items()))


def _checked_voices(voices: Sequence[str] | None) -> list[str]:
  voices = list(voices or DEFAULT_VOICES)
  available = set(espeak.available_voices(voices))
  missing = [v for v in voices if v not in available]
  if missing:
    raise ValueError(f"eSpeak NG has no voice(s) {missing}; languages are e.g. en, en-us, en-029, "
                     f"en-gb-scotland, variants +f1..+f5, +m1..+m8")
  if len(set(voices)) != len(voices):
    raise ValueError(f"voices repeat: {voices}")
  return voices


def build_pretrain_corpus(out_dir: str, num_utterances: int, seed: int, voices: Sequence[str] | None = None,
                          p_match: float = 0.8, num_workers: int = 2) -> str:
  """The unlabelled pre-training corpus; returns the manifest's path. Reruns skip finished work."""
  if num_utterances < 1 or not 0.0 <= p_match <= 1.0:
    raise ValueError(f"need num_utterances >= 1 and 0 <= p_match <= 1, got {num_utterances}, {p_match}")
  voices = _checked_voices(voices)
  settings = {"which": "pretrain", "num_utterances": num_utterances, "seed": seed, "voices": voices,
              "p_match": p_match, "profiles": {k: dataclasses.asdict(v) for k, v in PROFILES.items()},
              "jitter": JITTER}
  plan = plan_pretrain(num_utterances, seed, voices, p_match)
  return _build(out_dir, "pretrain", plan, settings, num_workers)


def build_labelled_corpus(out_dir: str, seed: int, voices: Sequence[str] | None = None, repeats: int = 1,
                          validation_voices: int | None = None, test_voices: int | None = None,
                          num_sentences: int | None = None, num_workers: int = 2) -> str:
  """The CREMA-D-style labelled corpus; returns the manifest's path. Reruns skip finished work.

  By default 12 voices x 12 sentences x 6 emotions = 864 utterances; 8 voices train, 2 validation, 2 test.
  """
  voices = _checked_voices(voices)
  settings = {"which": "labelled", "seed": seed, "voices": voices, "repeats": repeats,
              "validation_voices": validation_voices, "test_voices": test_voices,
              "num_sentences": num_sentences,
              "profiles": {k: dataclasses.asdict(v) for k, v in PROFILES.items()}, "jitter": JITTER}
  plan = plan_labelled(seed, voices, repeats, validation_voices, test_voices, num_sentences)
  return _build(out_dir, "labelled", plan, settings, num_workers)


def build_list_corpus(out_dir: str, seed: int, voices: Sequence[str] | None = None,
                      emotions: Sequence[str] = LIST_EMOTIONS, num_sentences: int = LIST_SENTENCES,
                      num_workers: int = 2) -> str:
  """A labelled corpus as a user brings one: wavs/ plus <out_dir>/list.csv (path,label,speaker; paths relative
  to the list). Returns the list's path. By default 6 voices x 5 sentences x 4 emotions = 120 clips."""
  voices = _checked_voices(voices or LIST_VOICES)
  settings = {"which": "list", "seed": seed, "voices": voices, "emotions": list(emotions),
              "num_sentences": num_sentences,
              "profiles": {k: dataclasses.asdict(v) for k, v in PROFILES.items()}, "jitter": JITTER}
  manifest_path = _build(out_dir, "list", plan_list(seed, voices, emotions, num_sentences), settings, num_workers)
  with open(manifest_path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  list_path = os.path.join(out_dir, "list.csv")
  fileio.write_text(list_path, "path,label,speaker\n" + "".join(
      f"{r['audio']},{r['label']},{r['speaker']}\n" for r in rows))
  return list_path


# ---------------------------------------------------------------------------------------------------
# Command line.

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_OUT = flags.DEFINE_string("out", None, "Output folder (wavs/, manifest.jsonl, ...).", flag_values=FLAGS)
_WHICH = flags.DEFINE_enum("which", None, ("pretrain", "labelled", "list"), "Which corpus.", flag_values=FLAGS)
_NUM = flags.DEFINE_integer("num", 2000, "pretrain: number of utterances.", flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the plan (texts, voices, prosody).", flag_values=FLAGS)
_VOICES = flags.DEFINE_string("voices", "", "Comma-separated eSpeak NG voices (default: 12 built in; "
                              "list: the first 6 of them).",
                              flag_values=FLAGS)
_P_MATCH = flags.DEFINE_float("p_match", 0.8, "pretrain: P(prosody follows the text).", flag_values=FLAGS)
_REPEATS = flags.DEFINE_integer("repeats", 1, "labelled: takes per voice/sentence/emotion.", flag_values=FLAGS)
_SENTENCES = flags.DEFINE_integer("sentences", None, "labelled, list: use the first N of the 12 (list: 5 by "
                                  "default).", flag_values=FLAGS)
_EMOTIONS = flags.DEFINE_list("emotions", list(LIST_EMOTIONS), "list: the labels, each spoken with its prosody "
                              "profile (PROSODY.md).", flag_values=FLAGS)
_WORKERS = flags.DEFINE_integer("workers", 2, "Processes synthesising speech.", flag_values=FLAGS)
flags.mark_flags_as_required(["out", "which"], flag_values=FLAGS)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  voices = [v.strip() for v in _VOICES.value.split(",") if v.strip()] or None
  if _WHICH.value == "pretrain":
    path = build_pretrain_corpus(_OUT.value, _NUM.value, _SEED.value, voices, _P_MATCH.value, _WORKERS.value)
  elif _WHICH.value == "list":
    path = build_list_corpus(_OUT.value, _SEED.value, voices, _EMOTIONS.value, _SENTENCES.value or LIST_SENTENCES,
                             _WORKERS.value)
  else:
    path = build_labelled_corpus(_OUT.value, _SEED.value, voices, _REPEATS.value, num_sentences=_SENTENCES.value,
                                 num_workers=_WORKERS.value)
  print(path)
  return 0


def run():
  """The `lanser-demo-corpus` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
