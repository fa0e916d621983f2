"""The Conformer and the spectrogram transformer: parameter counts, shapes, padding invariance, and one
real training run each through the trainer on 8 fake devices, restored by lanser_jax.load."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config
from lanser_jax.serving import classifier
from lanser_jax import models, train


def conformer_encoder_count(d: int, layers: int, kernel: int, mel_bins: int) -> int:
  """Closed-form count of Gulati et al.'s encoder, layer by layer (independent of the Flax code)."""
  ln = 2 * d
  ffn = ln + (d * 4 * d + 4 * d) + (4 * d * d + d)
  mhsa = ln + 4 * (d * d + d) + d * d + 2 * d  # q, k, v, out; relative-position projection; biases u, v
  conv = ln + (d * 2 * d + 2 * d) + (kernel * d + d) + 2 * d + (d * d + d)  # pw, depthwise, BN, pw
  block = 2 * ffn + mhsa + conv + ln
  f = ((mel_bins - 3) // 2 + 1 - 3) // 2 + 1  # frequency bins after two VALID 3x3 stride-2 convolutions
  subsample = (9 * d + d) + (9 * d * d + d) + (f * d * d + d)
  return layers * block + subsample


@pytest.mark.parametrize("name,d,paper_total", [("conformer_s", 144, 10.3e6), ("conformer_m", 256, 30.7e6)])
def test_conformer_counts(name, d, paper_total):
  """The paper's input is 80 log-mel bins. Its Table 1 totals (10.3M / 30.7M) include an RNN-T decoder
  (one LSTM layer of 320 / 640 units) and joint network that a classifier does not have, so the encoder
  alone must come below them, by less than such a decoder's size (~15% here)."""
  counts = models.count_params(models.create_model(name, num_classes=7), frames=300, mel_bins=80)
  assert counts["body"] == conformer_encoder_count(d, 16, 32, 80)
  assert 0.8 * paper_total < counts["body"] < paper_total
  assert counts["head"] == d * 7 + 7
  assert counts["batch_stats"] == 16 * 2 * d  # mean and variance of each block's conv-module BatchNorm


def test_spectrogram_transformer_b16_count_is_vit_b16_encoder():
  """timm's vit_base_patch16_224 has 86,567,656 parameters; ours lacks its 1000-class head, two of its
  three input channels, its 197 learned position embeddings and its [CLS] token (sinusoidal positions,
  masked mean pool instead)."""
  counts = models.count_params(models.create_model("spectrogram_transformer_b16", num_classes=7), frames=300, mel_bins=128)
  vit_b16 = 86_567_656
  expected = vit_b16 - (768 * 1000 + 1000) - 2 * 16 * 16 * 768 - 197 * 768 - 768
  assert counts["body"] == expected
  assert counts["batch_stats"] == 0
  assert counts["head"] == 768 * 7 + 7


@pytest.mark.parametrize("name,dim", [("conformer_tiny", 32), ("spectrogram_transformer_tiny", 32)])
def test_tiny_forward_shapes_and_bf16_compute(name, dim):
  model = models.create_model(name, num_classes=5, dtype="bfloat16")
  x = jnp.ones((2, 50, 32))
  # Jitted: one compile each, much cheaper on CPU than dispatching (and compiling) every op on its own.
  variables = jax.jit(model.init)(jax.random.key(0), x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  logits, embedding = jax.jit(model.apply)(variables, x)
  assert logits.shape == (2, 5) and logits.dtype == jnp.float32
  assert embedding.shape == (2, dim)


@pytest.mark.parametrize("name", ["conformer_tiny", "spectrogram_transformer_tiny"])
def test_padding_does_not_change_the_embedding(name):
  """An utterance of 41 frames alone, and padded to 96 with garbage (mask False), embeds the same; the
  same garbage without the mask does change it (the check can fail)."""
  model = models.create_model(name, num_classes=3)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, 41, 32)).astype(np.float32)
  padded = np.concatenate([x, 5 + rng.standard_normal((1, 55, 32)).astype(np.float32)], axis=1)
  mask = np.arange(96)[None, :] < 41
  variables = jax.jit(model.init)(jax.random.key(1), padded)
  apply = jax.jit(model.apply)  # two shapes, two compiles (eager would compile every op of each)
  _, alone = apply(variables, x, np.ones((1, 41), bool))
  _, masked = apply(variables, padded, mask)
  _, unmasked = apply(variables, padded, np.ones((1, 96), bool))
  np.testing.assert_allclose(masked, alone, rtol=1e-4, atol=1e-5)
  assert np.max(np.abs(unmasked - alone)) > 1e-2


def test_patch_size_and_stride_are_configurable():
  model = models.create_model("spectrogram_transformer_tiny", 3, patch_size=4, patch_stride=2)
  assert (model.patch_size, model.patch_stride) == (4, 2)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 20, 16))))["params"]
  assert params["patch_embed"]["kernel"].shape == (4, 4, 1, 32)
  with pytest.raises(ValueError, match="patch_size"):
    models.create_model("conformer_tiny", 3, patch_size=4)
  with pytest.raises(ValueError, match="width"):
    models.create_model("spectrogram_transformer_tiny", 3, width=0.5)


@pytest.mark.slow
@pytest.mark.multidevice
@pytest.mark.parametrize("name", ["conformer_tiny", "spectrogram_transformer_tiny"])
def test_one_training_run_on_8_devices_and_load(synth_dir, tmp_path, name):
  """The real trainer (8 fake devices, checkpoint, eval) and then lanser_jax.load on the checkpoint."""
  assert jax.device_count() == 8
  workdir = str(tmp_path / name)
  c = tiny_config(synth_dir, **{"model.name": name, "num_train_steps": 2, "eval_every_steps": 2,
                               "checkpoint_every_steps": 2, "log_every_steps": 1, "data.test_split": ""})
  results = train.train_and_evaluate(c, workdir)
  assert results["steps"] == 2 and 0.0 <= results["validation"]["ua"] <= 1.0
  clf = classifier.load(workdir)
  assert clf.step == 2
  emb = clf.embed_log_mel(np.zeros((80, 32), np.float32))
  assert emb.shape == (32,) and np.all(np.isfinite(emb))
