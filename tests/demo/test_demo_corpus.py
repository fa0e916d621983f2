"""Tests of the eSpeak NG demo corpora: determinism, manifests, speaker-independent splits, audible prosody."""

import collections
import filecmp
import json
import os

import numpy as np
import pytest
import soundfile

espeakng_loader = pytest.importorskip("espeakng_loader")

from lanser_jax.corpora import manifests  # pylint: disable=wrong-import-position
from lanser_jax.demo import corpus  # pylint: disable=wrong-import-position
from lanser_jax.demo import espeak  # pylint: disable=wrong-import-position
from lanser_jax.utils import cli  # pylint: disable=wrong-import-position

pytestmark = pytest.mark.needs_model  # eSpeak NG synthesises every corpus here

REQUIRED_KEYS = ("utt_id", "audio", "offset", "duration", "speaker", "label", "text", "split")
SMALL_VOICES = ["en-us", "en+f4", "en-029+m2"]  # one per split


def _read_manifest(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("pretrain"))
  corpus.build_pretrain_corpus(out, num_utterances=14, seed=3, voices=SMALL_VOICES, num_workers=1)
  return out


@pytest.fixture(scope="module")
def labelled_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("labelled"))
  corpus.build_labelled_corpus(out, seed=5, voices=SMALL_VOICES, num_sentences=2, num_workers=1)
  return out


def _check_manifest(out_dir):
  rows = _read_manifest(os.path.join(out_dir, "manifest.jsonl"))
  assert len({r["utt_id"] for r in rows}) == len(rows)
  for r in rows:
    assert all(k in r for k in REQUIRED_KEYS), r
    assert isinstance(r["utt_id"], str) and isinstance(r["speaker"], str) and r["speaker"]
    assert not os.path.isabs(r["audio"])  # relative to the manifest's folder, so the folder can move
    info = soundfile.info(os.path.join(out_dir, r["audio"]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "FLOAT")
    assert r["duration"] == pytest.approx(info.frames / 16000, abs=1e-3)
    assert r["offset"] is None and isinstance(r["text"], str) and r["text"]
    assert r["voice"] in SMALL_VOICES and r["speaker"] == corpus.speaker_id(r["voice"])
  # The project's own manifest reader accepts it and resolves the audio next to the manifest.
  parsed = list(manifests.read_manifest(os.path.join(out_dir, "manifest.jsonl")))
  assert [p.utt_id for p in parsed] == [r["utt_id"] for r in rows]
  assert all(os.path.isfile(p.audio) and os.path.isabs(p.audio) for p in parsed)
  return rows


def test_pretrain_manifest(pretrain_dir):
  rows = _check_manifest(pretrain_dir)
  assert len(rows) == 14
  assert all(r["label"] is None and r["split"] is None for r in rows)
  assert {r["text_emotion"] for r in rows} == set(corpus.EKMAN_EMOTIONS)  # balanced: 2 of each
  assert all(r["prosody_emotion"] in corpus.EKMAN_EMOTIONS for r in rows)
  with open(os.path.join(pretrain_dir, "errors.jsonl"), encoding="utf-8") as f:
    assert f.read() == ""


def test_labelled_manifest_and_speaker_independent_split(labelled_dir):
  rows = _check_manifest(labelled_dir)
  assert len(rows) == 3 * 2 * 6
  split_of = collections.defaultdict(set)
  for r in rows:
    split_of[r["speaker"]].add(r["split"])
  assert all(len(s) == 1 for s in split_of.values())
  assert sorted(s.pop() for s in split_of.values()) == ["test", "train", "validation"]
  for split in ("train", "validation", "test"):
    assert {r["label"] for r in rows if r["split"] == split} == set(corpus.CREMAD_EMOTIONS)
  # Only prosody differs: every emotion speaks the same sentences.
  texts = {e: sorted(r["text"] for r in rows if r["label"] == e) for e in corpus.CREMAD_EMOTIONS}
  assert len({tuple(t) for t in texts.values()}) == 1


def test_default_split_is_by_voice():
  plan = corpus.plan_labelled(seed=0, voices=corpus.DEFAULT_VOICES)
  assert len(plan) == 12 * 12 * 6
  voices_per_split = collections.defaultdict(set)
  for u in plan:
    voices_per_split[u.row["split"]].add(u.voice)
  assert {k: len(v) for k, v in voices_per_split.items()} == {"train": 8, "validation": 2, "test": 2}
  assert not (voices_per_split["train"] & (voices_per_split["validation"] | voices_per_split["test"]))
  other_seed = corpus.split_voices(corpus.DEFAULT_VOICES, seed=1, validation=2, test=2)
  assert other_seed != corpus.split_voices(corpus.DEFAULT_VOICES, seed=0, validation=2, test=2)


def test_audio_is_audible(labelled_dir):
  for r in _read_manifest(os.path.join(labelled_dir, "manifest.jsonl"))[:6]:
    audio, rate = soundfile.read(os.path.join(labelled_dir, r["audio"]), dtype="float32")
    assert rate == 16000 and audio.ndim == 1 and 0.5 < audio.size / rate < 8
    assert np.sqrt(np.mean(audio**2)) > 0.005 and np.max(np.abs(audio)) <= 1.0


def test_prosody_differs_between_emotions(labelled_dir):
  rows = _read_manifest(os.path.join(labelled_dir, "manifest.jsonl"))
  duration, loudness = collections.defaultdict(list), collections.defaultdict(list)
  for r in rows:
    audio, _ = soundfile.read(os.path.join(labelled_dir, r["audio"]), dtype="float32")
    duration[r["label"]].append(r["duration"])
    loudness[r["label"]].append(np.sqrt(np.mean(audio**2)))
  mean = lambda xs: float(np.mean(xs))
  # Same sentences and voices in each group, so these differences come from the emotion's prosody.
  assert mean(duration["anger"]) < mean(duration["neutral"]) < mean(duration["sad"])
  assert mean(duration["fear"]) < mean(duration["disgust"])
  assert mean(loudness["anger"]) > 1.3 * mean(loudness["neutral"]) > 1.3 * mean(loudness["sad"])


def test_same_seed_gives_identical_files(tmp_path, monkeypatch):
  a, b, c = (str(tmp_path / n) for n in "abc")
  voices = ["en-us+f2", "en-gb-scotland"]  # +f2 is breathy: its noise must follow the seed too
  corpus.build_pretrain_corpus(a, num_utterances=6, seed=11, voices=voices, num_workers=1)
  # Worker processes synthesise in another order, each with its own library: the bytes must not change.
  monkeypatch.setattr(corpus, "_MIN_TASKS_FOR_POOL", 0)
  corpus.build_pretrain_corpus(b, num_utterances=6, seed=11, voices=voices, num_workers=2)
  corpus.build_pretrain_corpus(c, num_utterances=6, seed=12, voices=voices, num_workers=1)
  names = sorted(os.listdir(os.path.join(a, "wavs")))
  assert len(names) == 6
  match, mismatch, errors = filecmp.cmpfiles(os.path.join(a, "wavs"), os.path.join(b, "wavs"), names,
                                             shallow=False)
  assert match == names and not mismatch and not errors
  assert filecmp.cmp(os.path.join(a, "manifest.jsonl"), os.path.join(b, "manifest.jsonl"), shallow=False)
  assert not filecmp.cmp(os.path.join(a, "manifest.jsonl"), os.path.join(c, "manifest.jsonl"), shallow=False)


def test_synthesis_does_not_depend_on_earlier_utterances():
  synth = espeak.Synthesiser.get()
  text, voice, prosody = "That was the last page of the book.", "en-us+f2", espeak.Prosody(rate=190)
  first = synth.synthesise_native(text, voice, prosody, seed=7)
  synth.synthesise_native("Something else entirely!", "en-029", espeak.Prosody(pitch=90), seed=1)
  assert np.array_equal(first, synth.synthesise_native(text, voice, prosody, seed=7))
  # The seed drives the breathy variant's noise, and nothing else changes.
  other = synth.synthesise_native(text, voice, prosody, seed=8)
  assert other.shape == first.shape and not np.array_equal(other, first)


def test_rebuild_is_skipped_and_resumes_from_wavs(tmp_path, monkeypatch):
  out = str(tmp_path / "c")
  manifest = corpus.build_pretrain_corpus(out, num_utterances=4, seed=2, voices=["en-us"], num_workers=1)
  with open(manifest, "rb") as f:
    original = f.read()

  def no_synthesis(*args, **kwargs):
    raise AssertionError("synthesised again")
  monkeypatch.setattr(espeak, "synthesise", no_synthesis)
  assert corpus.build_pretrain_corpus(out, num_utterances=4, seed=2, voices=["en-us"], num_workers=1) == manifest
  os.remove(manifest)  # an interrupted build: WAVs are there, the manifest is not
  corpus.build_pretrain_corpus(out, num_utterances=4, seed=2, voices=["en-us"], num_workers=1)
  with open(manifest, "rb") as f:
    assert f.read() == original
  with pytest.raises(ValueError, match="other settings"):
    corpus.build_pretrain_corpus(out, num_utterances=4, seed=3, voices=["en-us"], num_workers=1)


def test_a_failing_utterance_is_listed_not_fatal(tmp_path, monkeypatch):
  real = espeak.synthesise
  plan = corpus.plan_pretrain(5, seed=4, voices=["en-us"])
  bad_text = plan[2].text

  def flaky(text, *args, **kwargs):
    if text == bad_text:
      raise espeak.EspeakError("simulated failure")
    return real(text, *args, **kwargs)
  monkeypatch.setattr(espeak, "synthesise", flaky)
  out = str(tmp_path / "c")
  manifest = corpus.build_pretrain_corpus(out, num_utterances=5, seed=4, voices=["en-us"], num_workers=1)
  expected = [u.utt_id for u in plan if u.text != bad_text]
  assert [r["utt_id"] for r in _read_manifest(manifest)] == expected
  errors = _read_manifest(os.path.join(out, "errors.jsonl"))
  assert len(errors) == 1 and errors[0]["utt_id"] == plan[2].utt_id and "simulated failure" in errors[0]["error"]


def test_unknown_voice_is_refused_up_front(tmp_path):
  with pytest.raises(ValueError, match="en-xx"):
    corpus.build_labelled_corpus(str(tmp_path), seed=0, voices=["en-us", "en-xx", "en+f1"])
  with pytest.raises(ValueError, match="en-us\\+nope"):  # eSpeak NG itself ignores unknown variants silently
    corpus.build_pretrain_corpus(str(tmp_path), 3, seed=0, voices=["en-us+nope"])
  assert not os.path.exists(os.path.join(tmp_path, "manifest.jsonl"))


def test_prosody_follows_text_with_probability_p_match():
  plan = corpus.plan_pretrain(2100, seed=0, voices=corpus.DEFAULT_VOICES, p_match=0.8)
  counts = collections.Counter(u.row["text_emotion"] for u in plan)
  assert set(counts.values()) == {300}
  matched = np.mean([u.row["text_emotion"] == u.row["prosody_emotion"] for u in plan])
  assert 0.77 < matched < 0.83
  assert len({u.text for u in plan}) > 0.95 * len(plan)  # varied sentences, few repeats
  assert len({u.voice for u in plan}) == len(corpus.DEFAULT_VOICES)
  always = corpus.plan_pretrain(50, seed=0, voices=["en-us"], p_match=1.0)
  assert all(u.row["text_emotion"] == u.row["prosody_emotion"] for u in always)


def test_templates_fill_cleanly():
  rng = np.random.default_rng(0)
  slots = {"food": ["milk", "fish"], "person": ["my brother"]}
  for _ in range(10):
    sentence = corpus.fill_template("Wow! {person} bought {food} and {food2}.", slots, rng)
    assert sentence in ("Wow! My brother bought milk and fish.", "Wow! My brother bought fish and milk.")
  templates = corpus.load_templates()
  assert set(templates["emotions"]) == set(corpus.EKMAN_EMOTIONS)
  assert sum(corpus.count_sentences(templates).values()) > 10_000
  assert len(corpus.load_labelled_sentences()) == 12


def test_default_voices_exist():
  assert espeak.available_voices(corpus.DEFAULT_VOICES) == list(corpus.DEFAULT_VOICES)


def test_cli_builds_a_labelled_corpus(tmp_path, capsys):
  out = str(tmp_path / "cli")
  assert cli.call(corpus, [f"--out={out}", "--which=labelled", "--seed=1", "--voices=en-us,en+f4,en-029+m2",
                           "--sentences=1", "--workers=1"]) == 0
  assert capsys.readouterr().out.strip() == os.path.join(out, "manifest.jsonl")
  assert len(_read_manifest(os.path.join(out, "manifest.jsonl"))) == 3 * 1 * 6
  with open(os.path.join(out, "corpus.json"), encoding="utf-8") as f:
    assert json.load(f)["summary"]["splits"] == {"test": 6, "train": 6, "validation": 6}


def _random_run(path, seed=0, num_classes=4, mel_bins=64):
  """A loadable run (lanser_jax.load) of the tiny ResNet at random initialisation, with the log-mel front
  end: the analysis needs embeddings, not trained ones, and this compiles no train step."""
  import jax
  import jax.numpy as jnp
  import orbax.checkpoint as ocp
  from lanser_jax import config_lib, models
  from lanser_jax.audio import log_mel
  model = models.create_model("tiny", num_classes)
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, mel_bins)), train=False))(jax.random.key(seed))
  os.makedirs(os.path.join(path, "data"))
  ocp.PyTreeCheckpointer().save(os.path.join(path, "state"), jax.tree.map(np.asarray, dict(variables)))
  config = config_lib.base_config()
  config.model.name, config.data.crop_frames, config.data.eval_hop_frames = "tiny", 32, 16
  for name, obj in (("label_names", [f"c{i}" for i in range(num_classes)]),
                    ("dataset", {"feature": log_mel.LogMelOptions().to_json()}),
                    ("stats", {"mean": [-6.0] * mel_bins, "std": [3.0] * mel_bins})):
    with open(os.path.join(path, "data", f"{name}.json"), "w") as f:
      json.dump(obj, f)
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write(config.to_json())


def test_planted_prosody_is_the_analysis_ground_truth(labelled_dir, tmp_path):
  """The demo's analysis step (lanser_jax/demo/representations.py) on a demo-shaped workdir: the labelled
  corpus's test voice, runs named as the demo's; every planted eSpeak NG setting is probed beside the
  audio measures, the measures track the settings they should, and the report section shows both."""
  import shutil
  from lanser_jax.demo import report, representations
  work = tmp_path / "work"
  shutil.copytree(labelled_dir, work / "corpus" / "labelled")
  # One random run under the three names (a run each would only add initialisations and saves).
  runs = [path for _, path in representations.compared_runs(str(work), "0.1")]
  _random_run(runs[0], seed=0)
  for path in runs[1:]:
    shutil.copytree(runs[0], path)
  record = representations.run(str(work), "0.1", seed=0)
  rows = _read_manifest(os.path.join(labelled_dir, "manifest.jsonl"))
  test_rows = [r for r in rows if r["split"] == "test"]
  assert record["num_utterances"] == len(test_rows) == 12  # one test voice x 2 sentences x 6 emotions
  subset = _read_manifest(os.path.join(work, "analysis", "manifest.jsonl"))
  assert [r["utt_id"] for r in subset] == [r["utt_id"] for r in test_rows]
  assert all(os.path.isabs(r["audio"]) and os.path.isfile(r["audio"]) for r in subset)
  planted = {f"prosody.{k}" for k in ("rate", "pitch", "pitch_range", "volume", "word_gap")}
  assert set(record["probes"]) == {"pretrain", "pretrained_0.1", "scratch_0.1"}
  for probes in record["probes"].values():
    assert set(probes) == {"f0_mean_hz", "f0_range_hz", "energy_db", "speaking_rate", "words_per_second"} | planted
  assert record["command"][:2] == ["-m", "lanser_jax.tools.analysis"] and "--known=prosody" in record["command"]
  # The planted values are the manifest's, utterance by utterance.
  measured = {r["utt_id"]: r for r in _read_manifest(os.path.join(work, "analysis", "prosody.jsonl"))}
  for r in test_rows:
    assert {k: measured[r["utt_id"]][f"prosody.{k}"] for k in r["prosody"]} == r["prosody"]
  out = tmp_path / "report"
  out.mkdir()
  lines, summary = report.analysis_lines(str(work), str(out))
  text = "\n".join(lines)
  assert "| planted: rate (words/min) |" in text and "| F0 mean (Hz, pyin) |" in text
  assert sorted(os.listdir(out)) == ["analysis_pca.png", "analysis_probes.png", "analysis_tsne.png"]
  # Ground truth: one voice, the same two sentences at each emotion's settings, so F0 follows the planted
  # pitch and words per second the planted rate.
  r = summary["measure_vs_planted_r"]
  assert r["f0_mean_hz~prosody.pitch"] > 0.8 and r["words_per_second~prosody.rate"] > 0.8
  assert set(summary["mean_r2_planted"]) == set(record["probes"])


def test_list_corpus_is_a_csv_the_custom_config_reads(tmp_path, capsys):
  """--which=list: clips plus list.csv (path,label,speaker), read by the list adapter of custom.py."""
  from lanser_jax.corpora import generic
  out = str(tmp_path / "list")
  assert cli.call(corpus, [f"--out={out}", "--which=list", "--voices=en-us,en+f4", "--emotions=angry,sad",
                           "--sentences=2", "--workers=1"]) == 0
  path = os.path.join(out, "list.csv")
  assert capsys.readouterr().out.strip() == path
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert lines[0] == "path,label,speaker" and len(lines) == 1 + 2 * 2 * 2
  rows = list(generic.list_rows(path))
  assert all(isinstance(r, manifests.Row) and os.path.isfile(r.audio) for r in rows)
  assert collections.Counter((r.speaker, r.label) for r in rows) == {
      (s, e): 2 for s in ("en-us", "en-f4") for e in ("angry", "sad")}
  durations = {e: np.mean([soundfile.info(r.audio).duration for r in rows if r.label == e]) for e in ("angry", "sad")}
  assert durations["angry"] < durations["sad"]  # anger's profile speaks faster than sadness's
  with pytest.raises(ValueError, match="emotion 'bored'"):
    corpus.plan_list(0, ["en-us"], ("angry", "bored"))
