"""A Conformer encoder over log-mel spectrograms with a classification head, in Flax Linen.

Gulati et al. 2020 ("Conformer: Convolution-augmented Transformer for Speech Recognition"): two 3x3
stride-2 convolutions subsample time (and frequency) by 4, a linear layer projects to the model dimension,
then Conformer blocks (half-step feed-forward, relative-position self-attention, convolution module with a
GLU, depthwise convolution and BatchNorm, half-step feed-forward, LayerNorm). Sizes S and M are the paper's
Table 1 encoders; the paper's decoder (an RNN-T LSTM) is replaced by a mean over the real frames and a
linear head, as the ResNet has. Same interface as lanser_jax/models/__init__.py's ResNet:
`model.apply(variables, x [batch, frames, mel_bins], mask [batch, frames]) -> (logits, embedding)`.

Padding never reaches a real frame: the subsampling convolutions are VALID (an output that would cover a
padded frame is itself marked padded), attention masks padded keys, the depthwise convolution sees zeros
there (as it would past the end of an unpadded input) and the pool skips them. In training, BatchNorm's
batch statistics do include the (zeroed) padded frames.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lanser_jax.models import transformer_layers as tl


class DepthwiseConv1D(nn.Module):
  """Depthwise "SAME" convolution over time of x [batch, frames, channels], one kernel per channel.

  The same layer as `nn.Conv(channels, (kernel_size,), feature_group_count=channels, padding="SAME")`,
  with the same parameters ("kernel" [kernel_size, 1, channels], "bias" [channels]; the same initial values
  for the same key, so checkpoints written with that layer load here unchanged), but written as kernel_size
  shifted multiply-adds instead of a grouped convolution. Why: jax.grad turns a grouped convolution into a
  kernel gradient that is a convolution with batch_group_count = channels, and XLA's SPMD partitioner
  (jax 0.10.2 and 0.12.0.1, GSPMD and Shardy alike) sums that one over *every* device of the mesh when the
  batch is split over one mesh axis and replicated over another. On a data=4 x model=2 mesh the depthwise
  kernels' gradients came out exactly 2x (4x on data=2 x model=4) whatever the sharding rules, while every
  other gradient was right: the compiled program all-reduces over replica_groups={{0..7}} instead of over
  the 4 devices along `data` that hold different rows (docs/design_notes.md has a plain-lax reproduction).
  Shifted slices, products and sums partition correctly on any mesh. Cost: XLA fuses the forward and the
  input gradient into elementwise loops (memory-bound, as the grouped conv is); the kernel gradient becomes
  kernel_size reductions over batch and time. The taps are summed in float32 even when `dtype` is bfloat16.
  """
  kernel_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (self.kernel_size, 1, channels), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    acc = jnp.promote_types(self.dtype, jnp.float32)  # rounded to dtype as nn.Conv would, summed in float32
    x, kernel, bias = (a.astype(self.dtype).astype(acc) for a in (x, kernel, bias))
    frames = x.shape[1]
    # "SAME" as lax pads it: (kernel_size - 1) // 2 zeros before, the rest after.
    padded = jnp.pad(x, ((0, 0), ((self.kernel_size - 1) // 2, self.kernel_size // 2), (0, 0)))
    y = padded[:, :frames] * kernel[0, 0]
    for k in range(1, self.kernel_size):
      y = y + padded[:, k:k + frames] * kernel[k, 0]
    return (y + bias).astype(self.dtype)


class ConvModule(nn.Module):
  """Pointwise conv to 2*dim, GLU, depthwise conv, BatchNorm, swish, pointwise conv, dropout."""
  dim: int
  kernel_size: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, keep, *, train: bool, bn_train: bool):
    y = nn.Dense(2 * self.dim, dtype=self.dtype, name="pointwise1")(x)
    y = nn.glu(y, axis=-1)
    y = jnp.where(keep[:, :, None], y, 0)  # a padded frame contributes what the end of the input would: 0
    y = DepthwiseConv1D(self.kernel_size, self.dtype, name="depthwise")(y)  # not nn.Conv: see its docstring
    y = nn.BatchNorm(use_running_average=not bn_train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                     name="norm")(y)
    y = nn.swish(y)
    y = nn.Dense(self.dim, dtype=self.dtype, name="pointwise2")(y)
    return nn.Dropout(self.dropout_rate, deterministic=not train)(y)


class ConformerBlock(nn.Module):
  dim: int
  heads: int
  kernel_size: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, keep, *, train: bool, bn_train: bool):
    det = not train
    ln = lambda name: nn.LayerNorm(dtype=self.dtype, name=name)
    ffn = lambda name: tl.FeedForward(self.dim, 4, nn.swish, self.dropout_rate, self.dtype, name=name)
    x = x + 0.5 * ffn("ffn1")(ln("ffn1_norm")(x), deterministic=det)
    y = tl.SelfAttention(self.dim, self.heads, relative=True, dropout_rate=self.dropout_rate,
                         dtype=self.dtype, name="attention")(ln("attention_norm")(x), keep, deterministic=det)
    x = x + nn.Dropout(self.dropout_rate, deterministic=det)(y)
    x = x + ConvModule(self.dim, self.kernel_size, self.dropout_rate, self.dtype, name="conv")(
        ln("conv_norm")(x), keep, train=train, bn_train=bn_train)
    x = x + 0.5 * ffn("ffn2")(ln("ffn2_norm")(x), deterministic=det)
    return ln("out_norm")(x)


class Conformer(nn.Module):
  """Conformer over [batch, frames, mel_bins] returning (logits [batch, classes], embedding [batch, dim])."""
  num_classes: int
  dim: int = 144
  layers: int = 16
  heads: int = 4
  kernel_size: int = 32
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None, *, train: bool = False, freeze_backbone: bool = False):
    if x.ndim != 3:
      raise ValueError(f"Conformer expects [batch, frames, mel_bins], got shape {x.shape}")
    if x.shape[1] < 7 or x.shape[2] < 7:
      raise ValueError(f"Conformer needs at least 7 frames and 7 mel bins (two 3x3 stride-2 convolutions), "
                       f"got {x.shape[1:]}")
    bn_train = train and not freeze_backbone
    lengths = tl.valid_frames(mask, x.shape[0], x.shape[1])
    y = x[..., None].astype(self.dtype)
    for i in range(2):  # subsampling by 4 in time; VALID so that real outputs see real frames only
      y = nn.relu(nn.Conv(self.dim, (3, 3), (2, 2), padding="VALID", dtype=self.dtype,
                          name=f"subsample_conv{i + 1}")(y))
      lengths = tl.valid_after_conv(lengths, 3, 2)
    y = y.reshape(y.shape[0], y.shape[1], -1)  # [batch, frames/4, (bins/4) * dim]
    y = nn.Dense(self.dim, dtype=self.dtype, name="subsample_proj")(y)
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    keep = tl.token_mask(lengths, y.shape[1])
    for i in range(self.layers):
      y = ConformerBlock(self.dim, self.heads, self.kernel_size, self.dropout_rate, self.dtype,
                         name=f"block{i + 1}")(y, keep, train=train, bn_train=bn_train)

    embedding = tl.masked_token_mean(y, keep)
    if freeze_backbone:
      embedding = jax.lax.stop_gradient(embedding)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(embedding)
    logits = nn.Dense(self.num_classes, dtype=jnp.float32, name="head")(h)
    return logits, embedding


# Gulati et al. 2020, Table 1 (encoder columns): S = 16 layers, dim 144, 4 heads, kernel 32;
# M = 16 layers, dim 256, 4 heads, kernel 32. "tiny" is ours, for tests and the CPU demo.
SIZES: dict[str, dict[str, int]] = {
    "conformer_s": dict(dim=144, layers=16, heads=4, kernel_size=32),
    "conformer_m": dict(dim=256, layers=16, heads=4, kernel_size=32),
    "conformer_tiny": dict(dim=32, layers=2, heads=2, kernel_size=7),
}


def create(name: str, num_classes: int, dropout_rate: float = 0.0, dtype: Any = jnp.float32) -> Conformer:
  return Conformer(num_classes=num_classes, dropout_rate=dropout_rate, dtype=dtype, **SIZES[name])
