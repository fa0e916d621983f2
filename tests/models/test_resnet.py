import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lanser_jax import models
from lanser_jax.models import resnet

# torchvision's ImageNet ResNet-50 / ResNet-18 have 25,557,032 / 11,689,512 parameters, of which the
# 1000-class head holds 2,049,000 / 513,000. A one-channel stem has 7*7*64*2 = 6,272 fewer weights.
ONE_CHANNEL_STEM_SAVING = 7 * 7 * 64 * 2


@pytest.mark.parametrize("name,imagenet_total,imagenet_head", [
    ("resnet50", 25_557_032, 2_049_000),
    ("resnet18", 11_689_512, 513_000),
])
def test_body_matches_imagenet_count(name, imagenet_total, imagenet_head):
  counts = models.count_params(models.create_model(name, num_classes=7))
  assert counts["body"] == imagenet_total - imagenet_head - ONE_CHANNEL_STEM_SAVING
  assert counts["head"] == (2048 if name == "resnet50" else 512) * 7 + 7


def test_width_multiplier_scales_parameters():
  narrow = models.count_params(models.create_model("resnet18", 4, width=0.5))["body"]
  full = models.count_params(models.create_model("resnet18", 4))["body"]
  assert 0.2 * full < narrow < 0.3 * full  # conv weights scale with width squared


def test_tiny_forward_shapes_and_bf16_compute():
  model = models.create_model("tiny", num_classes=5, dtype="bfloat16")
  x = jnp.ones((2, 50, 32))
  # Jitted: one compile each, much cheaper on CPU than dispatching (and compiling) every op on its own.
  variables = jax.jit(model.init)(jax.random.key(0), x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  logits, embedding = jax.jit(model.apply)(variables, x)
  assert logits.shape == (2, 5) and logits.dtype == jnp.float32
  assert embedding.shape == (2, 8 * 8 * 4)


def test_masked_pool_ignores_padded_frames():
  """The pool averages over the output time steps that cover real frames: 8 of 16 input frames -> 2 of 4."""
  y = jnp.arange(2 * 4 * 3 * 1, dtype=jnp.float32).reshape(2, 4, 3, 1)
  mask = jnp.array([[True] * 8 + [False] * 8, [True] * 16])
  pooled = resnet.masked_mean_pool(y, mask, input_frames=16)
  np.testing.assert_allclose(pooled[0], y[0, :2].mean(axis=(0, 1)))
  np.testing.assert_allclose(pooled[1], y[1].mean(axis=(0, 1)))


def test_unknown_architecture_is_named():
  with pytest.raises(ValueError, match="resnet51"):
    models.create_model("resnet51", 4)


def test_param_count_command(capsys):
  from lanser_jax.models import __main__ as param_counts
  from lanser_jax.utils import cli
  assert cli.call(param_counts, ["--model=tiny", "--num_classes=3"]) == 0
  assert "tiny" in capsys.readouterr().out
