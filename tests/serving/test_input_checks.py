"""Serving inputs of the wrong scale are rescaled, refused or warned about, and outputs that are not finite are
refused naming the input: a tiny model (random parameters) behind the real Classifier front end; a folder that
is no run is refused in one line naming the runs below it."""

import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from builders import SR, _clip
from lanser_jax.audio import log_mel as log_mel_lib
from lanser_jax.engine import value_checks
from lanser_jax.input_pipeline import pipeline
from lanser_jax.serving import classifier
from lanser_jax import models

CROP, HOP = 64, 32


@pytest.fixture(scope="module")
def parts():
  """A tiny model, and statistics of clips like the waveforms below (as a training split's would be)."""
  rng = np.random.default_rng(0)
  options = log_mel_lib.LogMelOptions()
  front = log_mel_lib.LogMel(options)
  clips = [_clip(rng, i % 4, 1.0) for i in range(8)]
  mels = np.concatenate([front.one(c) for c in clips])
  normalizer = pipeline.Normalizer(mels.mean(0).astype(np.float32), np.maximum(mels.std(0), 1e-3).astype(np.float32))
  model = models.create_model("tiny", 4)
  variables = model.init(jax.random.key(0), jnp.zeros((1, CROP, options.num_mel_bins)), train=False)
  config = ml_collections.ConfigDict({"data": {"crop_frames": CROP, "eval_hop_frames": HOP}})
  return model, jax.device_get(variables), config, normalizer, options.to_json(), clips


def _classifier(parts, variables=None):
  model, base, config, normalizer, feature, _ = parts
  return classifier.Classifier(model, variables or base, config=config, label_names=["a", "b", "c", "d"],
                               normalizer=normalizer, feature=feature, batch_size=8)


def test_integer_pcm_is_rescaled_with_a_warning(parts, caplog):
  clf, x = _classifier(parts), parts[5][1]
  float_probs = clf.predict(x, sample_rate=SR).probabilities
  pcm = np.round(x * 32767).astype(np.int16)
  with caplog.at_level(logging.WARNING, logger=classifier.__name__):
    int_probs = clf.predict(pcm, sample_rate=SR).probabilities
  assert "waveform of dtype int16: integer PCM, scaled to float samples in [-1, 1]" in caplog.text
  np.testing.assert_allclose(int_probs, float_probs, atol=2e-3)
  assert not any("standard deviations" in r.message for r in caplog.records)


def test_unsigned_8_bit_pcm_is_centred_and_other_integer_widths_refused():
  x = classifier.as_float_samples(np.asarray([0, 128, 255], np.uint8))
  np.testing.assert_allclose(x, [-1.0, 0.0, 127 / 128])
  with pytest.raises(ValueError, match="a waveform of dtype int64: integer samples of no PCM width"):
    classifier.as_float_samples([0, 1000, -1000])


@pytest.mark.parametrize("rate", [0, -16000, float("nan")])
def test_sample_rate_must_be_positive(parts, rate):
  clf = _classifier(parts)
  with pytest.raises(ValueError, match=rf"sample_rate={rate!r}: must be a number of samples per second > 0"):
    clf.predict(parts[5][0], sample_rate=rate)


def test_log_mel_far_from_the_training_statistics_is_warned(parts, caplog):
  clf = _classifier(parts)
  mel = log_mel_lib.LogMel(log_mel_lib.LogMelOptions()).one(parts[5][2])
  with caplog.at_level(logging.WARNING, logger=classifier.__name__):
    clf.predict_log_mel(mel)
  assert not caplog.records  # as the features stage computes it: no warning
  with caplog.at_level(logging.WARNING, logger=classifier.__name__):
    clf.predict_log_mel([mel, np.exp(mel), 10 * np.log10(np.exp(mel))])
  assert len(caplog.records) == 1
  message = caplog.records[0].getMessage()
  assert message.startswith("input 1 (and 1 more inputs): its log-mel lies ")
  assert f"more than {value_checks.SCALE_LIMIT_STD:g} is far outside what the model saw" in message


def test_waveform_of_integer_scale_in_floats_is_warned(parts, caplog):
  clf = _classifier(parts)
  with caplog.at_level(logging.WARNING, logger=classifier.__name__):
    clf.predict(parts[5][3] * 32767, sample_rate=SR)  # int16 values stored as floats
  assert "input 0: its log-mel lies" in caplog.text


def test_non_finite_outputs_name_the_input(parts):
  model, base, *_ = parts
  huge = jax.tree.map(np.copy, base)
  huge["params"]["head"]["kernel"] = np.full_like(huge["params"]["head"]["kernel"], 3e38)
  clf = _classifier(parts, huge)
  mel = log_mel_lib.LogMel(log_mel_lib.LogMelOptions()).one(parts[5][0])
  with pytest.raises(value_checks.NonFiniteValueError, match=r"^input 0: its logits are NaN or infinite "
                                                             r"\(2 of 2 inputs\)"):
    clf.predict_log_mel([mel, mel])


def test_a_folder_that_is_no_run_is_a_fault_naming_the_runs_below_it(tmp_path):
  """A sweep's folder given as --workdir: one line (a fault, no traceback) that names the runs inside it."""
  from lanser_jax.utils import faults
  for run in ("seed1", "seed0", "frac0.1/seed0"):
    (tmp_path / run / "data").mkdir(parents=True)
    (tmp_path / run / "config.json").write_text("{}")
  with pytest.raises(FileNotFoundError) as e:
    classifier.load(str(tmp_path))
  assert faults.describe(e.value) == (
      f"{tmp_path}: no training workdir (config.json and data/) at or above it; the runs below it: "
      "frac0.1/seed0, seed0, seed1 (name one)", "")
  with pytest.raises(FileNotFoundError, match=r"empty: no training workdir .*; pass the folder of one training run"):
    classifier.load(str(tmp_path / "empty"))
