"""Layers the Conformer and the spectrogram transformer share: padding masks of token sequences, masked
self-attention, a feed-forward block and a mean pool over the real tokens only.

Every layer here is written so that the value at a real (unpadded) position does not depend on what the
padded positions hold: attention never looks at padded keys and the pool never counts padded tokens. That
is what lets a 1.2-s utterance padded to a 3-s crop get the embedding it gets alone (tests/models/test_backbones.py).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def valid_frames(mask, batch: int, frames: int) -> jax.Array:
  """Real input frames per example: the mask's count, or all of them without a mask."""
  if mask is None:
    return jnp.full((batch,), frames, jnp.int32)
  return jnp.sum(mask, axis=1).astype(jnp.int32)


def valid_after_conv(lengths: jax.Array, kernel: int, stride: int) -> jax.Array:
  """Outputs of a VALID convolution that see real frames only; at least 1 so that pooling is defined.

  max(lengths - kernel, 0) // stride + 1, as a truncating division of a non-negative number: the same
  integers as flooring, without the remainder jnp's `//` adds for negative operands (jax2onnx 0.17.1 cannot
  convert that integer `rem` once the batch is symbolic, as in an exported model's window batch)."""
  return jax.lax.div(jnp.maximum(lengths - kernel, 0), jnp.asarray(stride, lengths.dtype)) + 1


def token_mask(lengths: jax.Array, tokens: int) -> jax.Array:
  """[batch, tokens] True where the token index is below the example's length."""
  return jnp.arange(tokens)[None, :] < lengths[:, None]


def masked_token_mean(x: jax.Array, keep: jax.Array) -> jax.Array:
  """Mean of x [batch, tokens, dim] over the tokens where keep [batch, tokens] holds."""
  w = keep.astype(jnp.float32)
  summed = jnp.einsum("btd,bt->bd", x.astype(jnp.float32), w)
  return summed / jnp.maximum(jnp.sum(w, axis=1, keepdims=True), 1.0)


def attention_bias(keep: jax.Array) -> jax.Array:
  """[batch, 1, 1, keys] additive bias: 0 for real keys, a large negative number for padded ones."""
  return jnp.where(keep, 0.0, -1e9)[:, None, None, :].astype(jnp.float32)


class FeedForward(nn.Module):
  """Dense(mult * dim) -> activation -> dropout -> Dense(dim) -> dropout (pre-norm left to the caller)."""
  dim: int
  mult: int = 4
  activation: Any = nn.gelu
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    y = nn.Dense(self.dim * self.mult, dtype=self.dtype, name="dense1")(x)
    y = self.activation(y)
    y = nn.Dropout(self.dropout_rate, deterministic=deterministic)(y)
    y = nn.Dense(self.dim, dtype=self.dtype, name="dense2")(y)
    return nn.Dropout(self.dropout_rate, deterministic=deterministic)(y)


class SelfAttention(nn.Module):
  """Multi-head self-attention over x [batch, tokens, dim] with padded keys masked out.

  Projections are DenseGeneral to [heads, head_dim] (query/key/value kernels [dim, heads, head_dim], out
  kernel [heads, head_dim, dim]), so a tensor-parallel rule can split the heads axis (lanser_jax/engine/sharding.py).
  With `relative=True` it is Transformer-XL's relative-position attention as the Conformer uses it
  (Dai et al. 2019): sinusoidal encodings of the offset i - j, a learned projection of them and the two
  learned biases u (content) and v (position).
  """
  dim: int
  heads: int
  relative: bool = False
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, keep, *, deterministic: bool):
    if self.dim % self.heads:
      raise ValueError(f"attention dim {self.dim} is not divisible by {self.heads} heads")
    head_dim = self.dim // self.heads
    proj = lambda name: nn.DenseGeneral((self.heads, head_dim), dtype=self.dtype, name=name)
    q, k, v = proj("query")(x), proj("key")(x), proj("value")(x)  # [b, t, h, d]
    scale = head_dim ** -0.5
    if self.relative:
      u = self.param("pos_bias_u", nn.initializers.zeros, (self.heads, head_dim))
      vb = self.param("pos_bias_v", nn.initializers.zeros, (self.heads, head_dim))
      scores = jnp.einsum("bqhd,bkhd->bhqk", q + u.astype(q.dtype), k)
      t = x.shape[1]
      offsets = jnp.arange(t - 1, -t, -1)  # t-1 .. -(t-1): the offset i - j of every pair
      # dot_general=lax.dot_general is flax's default spelled out (the same program): it makes jax2onnx 0.17.1
      # convert the plain dot_general instead of its own DenseGeneral lowering, which leaves out the reshape
      # to [2t-1, h, d] when the input has two axes.
      enc = nn.DenseGeneral((self.heads, head_dim), use_bias=False, dtype=self.dtype, name="pos",
                            dot_general=jax.lax.dot_general)(sinusoid(offsets, self.dim).astype(self.dtype))
      pos = jnp.einsum("bqhd,phd->bhqp", q + vb.astype(q.dtype), enc)  # [b, h, t, 2t-1]
      # Entry (i, j) wants offset i - j, which sits at index (t - 1) - i + j of `offsets`: one gather from
      # each head's rows laid end to end (row i starts at i * (2t - 1)), with one constant index for every
      # example and head. (take_along_axis with the index broadcast over [batch, heads] is the same gather,
      # but jax2onnx 0.17.1 gives it the wrong batch size once the batch is symbolic, as in an exported
      # model's window batch.)
      i, j = np.arange(t)[:, None], np.arange(t)[None, :]
      index = i * (2 * t - 1) + (t - 1) - i + j  # [t, t]
      scores = scores + jnp.take(pos.reshape(pos.shape[:2] + (t * (2 * t - 1),)), index, axis=-1)
    else:
      scores = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    scores = scores.astype(jnp.float32) * scale + attention_bias(keep)
    weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
    weights = nn.Dropout(self.dropout_rate, deterministic=deterministic)(weights)
    y = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    return nn.DenseGeneral(self.dim, axis=(-2, -1), dtype=self.dtype, name="out")(y)


def sinusoid(positions: jax.Array, dim: int) -> jax.Array:
  """Transformer sinusoidal encodings [len(positions), dim] of (possibly negative) positions."""
  half = dim // 2
  freq = jnp.exp(-jnp.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / max(half, 1))
  angle = positions.astype(jnp.float32)[:, None] * freq[None, :]
  enc = jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)
  return jnp.pad(enc, ((0, 0), (0, dim - 2 * half)))
