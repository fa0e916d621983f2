"""Representation analysis: ridge probes recover a planted linear relation (and not noise), the prosodic
measures read known F0, level and syllable rate off synthetic clips, and the command runs end to end on a
tiny trained run."""

import json
import os
import re

import numpy as np
import pytest
import soundfile

from helpers import tiny_config
from lanser_jax.input_pipeline import records
from lanser_jax.tools import analysis
from lanser_jax.utils import cli
from lanser_jax.audio import decode
from lanser_jax.audio import log_mel as log_mel_lib
from lanser_jax import train

SR = 16000


def test_probe_recovers_a_planted_linear_relation():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((300, 24))
  w = rng.standard_normal(24)
  y = x @ w + 0.1 * rng.standard_normal(300)
  planted = analysis.probe_r2(x, y, seed=1, test_fraction=0.3)
  # round(1 / 0.3) = 3 folds: every utterance predicted once, each fold trained on the other two thirds.
  assert planted["r2"] > 0.97 and planted["n_test"] == 300 and planted["n_train"] == 200
  assert planted["folds"] == 3 and len(planted["r2_folds"]) == 3 and planted["split_by"] == "utterance"
  assert planted["r2_std"] == pytest.approx(np.std(planted["r2_folds"], ddof=1))
  noise = analysis.probe_r2(x, rng.standard_normal(300), seed=1)
  assert noise["r2"] < 0.1
  y_nan = y.copy()
  y_nan[:50] = np.nan  # undefined F0: left out, not imputed
  assert analysis.probe_r2(x, y_nan, seed=1)["n_test"] == 250
  assert analysis.probe_r2(x, y, seed=1) == planted  # the seed fixes the split
  assert analysis.probe_r2(x[:4], y[:4])["r2"] is None  # too few to hold any out


def test_probes_split_by_speaker_never_share_a_voice():
  """A measure that only names the speaker is predictable across utterances but not across speakers: split by
  speaker, the probe cannot learn a voice from its own other utterances."""
  rng = np.random.default_rng(0)
  speakers = [f"s{i % 12}" for i in range(240)]
  voice = {s: rng.standard_normal(16) for s in set(speakers)}
  x = np.stack([voice[s] + 0.05 * rng.standard_normal(16) for s in speakers])
  y = np.asarray([float(int(s[1:]) % 5) + 0.1 * rng.standard_normal() for s in speakers])  # arbitrary per speaker
  by_utterance = analysis.probe_r2(x, y, seed=0)
  by_speaker = analysis.probe_r2(x, y, seed=0, groups=speakers)
  assert by_speaker["split_by"] == "speaker" and by_utterance["split_by"] == "utterance"
  assert by_utterance["r2"] > 0.9 and by_speaker["r2"] < 0.5
  folds, how = analysis.probe_folds(len(speakers), speakers, 3, seed=0)
  assert how == "speaker" and sorted(np.concatenate(folds).tolist()) == list(range(240))
  for test in folds:
    assert not ({speakers[i] for i in test} & {speakers[i] for i in set(range(240)) - set(test.tolist())})


def _syllables(f0, rate, seconds=2.0, amp=0.3):
  """A harmonic tone at f0 Hz, switched on and off `rate` times per second (syllable-like bursts)."""
  t = np.arange(int(seconds * SR)) / SR
  tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3))
  envelope = np.sin(np.pi * rate * t) ** 2  # `rate` bursts per second, silent between them
  return (amp * tone * envelope / np.max(np.abs(tone))).astype(np.float32)


@pytest.mark.parametrize("f0,rate", [(140.0, 3.0), (260.0, 5.0)])
def test_prosody_measures_read_known_values(f0, rate):
  m = analysis.prosody(_syllables(f0, rate))
  assert m["f0_mean_hz"] == pytest.approx(f0, rel=0.03)
  assert m["f0_range_hz"] < 0.1 * f0  # a flat pitch
  assert m["speaking_rate"] == pytest.approx(rate, abs=0.5)
  louder = analysis.prosody(2 * _syllables(f0, rate))
  assert louder["energy_db"] - m["energy_db"] == pytest.approx(20 * np.log10(2), abs=0.3)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """Clips with planted F0 (four pitches = four labels, two speakers) -> features -> a tiny trained model."""
  root = tmp_path_factory.mktemp("analysis")
  rng = np.random.default_rng(0)
  options = log_mel_lib.LogMelOptions()
  log_mel = log_mel_lib.LogMel(options)
  pitches = {"low": 120.0, "mid": 180.0, "high": 260.0, "top": 380.0}
  examples, manifest = {"train": [], "validation": []}, []
  for split, n in (("train", 16), ("validation", 4)):
    for i in range(n):
      label = list(pitches)[i % 4]
      utt = f"{split}-{i:03d}"
      path = str(root / "wav" / f"{utt}.wav")
      os.makedirs(os.path.dirname(path), exist_ok=True)
      x = _syllables(pitches[label] * rng.uniform(0.95, 1.05), rng.uniform(2, 6), rng.uniform(1.0, 1.6),
                     amp=rng.uniform(0.1, 0.5))
      soundfile.write(path, x, SR, subtype="PCM_16")
      mel = log_mel.one(decode.load(path).samples)
      examples[split].append(records.Example(utt, mel.astype(np.float16), i % 4, speaker_id=f"s{i % 2}"))
      manifest.append({"utt_id": utt, "audio": path, "label": label, "speaker": f"s{i % 2}"})
  data_dir = str(root / "features")
  records.write_split(data_dir, "train", examples["train"], 1, options.num_mel_bins)
  records.write_split(data_dir, "validation", examples["validation"], 1, options.num_mel_bins)
  records.write_dataset_info(data_dir, list(pitches), options.to_json(), ["train", "validation"], "train")
  workdir = str(root / "run")
  train.train_and_evaluate(tiny_config(data_dir, num_train_steps=6, eval_every_steps=6,
                                       **{"data.test_split": ""}), workdir)
  with open(root / "manifest.jsonl", "w") as f:
    for row in manifest:
      f.write(json.dumps(row) + "\n")
    f.write(json.dumps({"utt_id": "missing", "audio": str(root / "nope.wav")}) + "\n")
  return {"workdir": workdir, "manifest": str(root / "manifest.jsonl"), "root": root}


def test_analysis_command_end_to_end(tiny_run, capsys):
  out = str(tiny_run["root"] / "out")
  # The same tiny run under two names stands in for pre-trained and scratch (training two is slower).
  assert cli.call(analysis, [f"--workdir=pretrained={tiny_run['workdir']}",
                             f"--workdir=scratch={tiny_run['workdir']}", f"--manifest={tiny_run['manifest']}",
                             f"--out={out}", "--seed=3", "--split=all"]) == 0
  result = json.load(open(os.path.join(out, "analysis.json")))
  assert result["num_utterances"] == 20 and [s["utt_id"] for s in result["skipped"]] == ["missing"]
  assert set(result["probes"]) == {"pretrained", "scratch"}
  assert result["probe_split_by"] == "speaker" and result["probe_folds"] == 2  # two speakers: two folds
  for run in result["probes"].values():
    assert set(run) == set(analysis.MEASURES)
    assert all(isinstance(p["r2"], float) and p["n_test"] == 20 and p["folds"] == 2 for p in run.values())
  assert result["probes"]["pretrained"] == result["probes"]["scratch"]  # same run, same seed: same numbers
  assert 120 < result["measure_means"]["f0_mean_hz"] < 380
  for name in ("pca.png", "tsne.png", "probes.png"):
    assert os.path.getsize(os.path.join(out, name)) > 5000
  lines = open(os.path.join(out, "prosody.jsonl")).read().splitlines()
  assert len(lines) == 20 and json.loads(lines[0])["f0_mean_hz"] > 100
  assert re.search(r"\| f0_mean_hz \| -?\d+\.\d{3} ± \d+\.\d{3} \|", open(os.path.join(out, "analysis.md")).read())
  assert "| measure | pretrained | scratch |" in capsys.readouterr().out


def test_held_out_leaves_out_what_the_runs_trained_on(tiny_run):
  """The default split: every utterance in the run's train or validation split is left out (here: all 20, so
  the analysis refuses to run on fewer than 5); a split name keeps that split of the run's feature folder."""
  runs = [("run", tiny_run["workdir"])]
  excluded, only = analysis.choose_utterances(runs, "held_out")
  assert only is None and len(excluded) == 20 and excluded["train-000"] == "in run run's train split"
  excluded, only = analysis.choose_utterances(runs, "validation")
  assert not excluded and only == {f"validation-{i:03d}" for i in range(4)}
  with pytest.raises(ValueError, match="left out as the runs' training or validation utterances"):
    analysis.analyse(runs, tiny_run["manifest"], str(tiny_run["root"] / "held"), log=lambda *_: None)
  with pytest.raises(ValueError, match="--split=test: none of the runs' feature folders has that split"):
    analysis.choose_utterances(runs, "test")


def test_known_values_read_numbers_a_manifest_carries():
  from lanser_jax.corpora import manifests
  rows = [manifests.Row.from_json(d) for d in (
      {"utt_id": "a", "audio": "a.wav", "prosody": {"rate": 120, "pitch": 40.5, "voice": "en", "on": True}},
      {"utt_id": "b", "audio": "b.wav", "prosody": {"rate": 200}},
      {"utt_id": "c", "audio": "c.wav"})]
  got = analysis.known_values(rows, "prosody")
  assert got[0] == {"prosody.pitch": 40.5, "prosody.rate": 120.0}  # strings and booleans are not measures
  assert got[1]["prosody.rate"] == 200.0 and np.isnan(got[1]["prosody.pitch"])  # missing: left out of that probe
  assert all(np.isnan(v) for v in got[2].values())
  with pytest.raises(ValueError, match="m.jsonl: no row holds a dict of numbers under 'planted'"):
    analysis.known_values(rows, "planted", "m.jsonl")
