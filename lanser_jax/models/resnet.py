"""ResNets for one-channel log-mel spectrograms (Flax Linen), returning (logits, embedding).

The layout follows the ImageNet ResNets (He et al. 2016; torchvision's v1.5 with the stride in the 3x3 conv),
so ResNet-50 here has the ImageNet ResNet-50's parameters less the two input channels of its stem. Time is the
first spatial axis, mel bins the second. Padded frames (mask == False) are left out of the global average pool,
so a short utterance padded to the crop length pools over its real frames only.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ModuleDef = Any


class BasicBlock(nn.Module):
  """Two 3x3 convolutions (ResNet-18/34)."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  strides: tuple[int, int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.filters, (3, 3))(y)
    y = self.norm(scale_init=nn.initializers.zeros)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), self.strides, name="proj_conv")(residual)
      residual = self.norm(name="proj_norm")(residual)
    return nn.relu(residual + y)


class BottleneckBlock(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand by 4 (ResNet-50 and up)."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  strides: tuple[int, int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = nn.relu(self.norm()(self.conv(self.filters, (1, 1))(x)))
    y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), self.strides)(y)))
    y = self.conv(self.filters * 4, (1, 1))(y)
    # Zero-init of the last norm's scale makes each block start as identity (Goyal et al. 2017).
    y = self.norm(scale_init=nn.initializers.zeros)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), self.strides, name="proj_conv")(residual)
      residual = self.norm(name="proj_norm")(residual)
    return nn.relu(residual + y)


class ResNet(nn.Module):
  """ResNet over [batch, frames, mel_bins] returning (logits [batch, classes], embedding [batch, dim])."""
  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_classes: int
  num_filters: int = 64
  width: float = 1.0
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, x, mask=None, *, train: bool = False, freeze_backbone: bool = False):
    if x.ndim != 3:
      raise ValueError(f"ResNet expects [batch, frames, mel_bins], got shape {x.shape}")
    bn_train = train and not freeze_backbone
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, padding="SAME")
    norm = functools.partial(nn.BatchNorm, use_running_average=not bn_train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)
    filters = max(1, int(round(self.num_filters * self.width)))

    y = x[..., None].astype(self.dtype)
    y = conv(filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="stem_conv")(y)
    y = nn.relu(norm(name="stem_norm")(y))
    y = nn.max_pool(y, window_shape=(3, 3), strides=(2, 2), padding="SAME")  # keywords: jax2onnx patches it so
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        strides = (2, 2) if i > 0 and j == 0 else (1, 1)
        y = self.block_cls(filters * 2**i, conv=conv, norm=norm, strides=strides,
                           name=f"stage{i + 1}_block{j + 1}")(y)

    embedding = masked_mean_pool(y, mask, x.shape[1]).astype(jnp.float32)
    if freeze_backbone:
      embedding = jax.lax.stop_gradient(embedding)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(embedding)
    logits = nn.Dense(self.num_classes, dtype=jnp.float32, name="head")(h)
    return logits, embedding


def masked_mean_pool(y, mask, input_frames: int):
  """Mean over time and frequency, counting only the time steps that cover real (unpadded) frames."""
  if mask is None:
    return jnp.mean(y, axis=(1, 2))
  out_frames = y.shape[1]
  stride = input_frames / out_frames
  valid = jnp.sum(mask, axis=1).astype(jnp.float32)  # [batch]
  valid_out = jnp.clip(jnp.ceil(valid / stride), 1, out_frames)
  keep = (jnp.arange(out_frames)[None, :] < valid_out[:, None]).astype(y.dtype)  # [batch, out_frames]
  summed = jnp.einsum("btfc,bt->bc", y, keep)
  return summed / (valid_out[:, None] * y.shape[2]).astype(y.dtype)


ARCHS: dict[str, dict[str, Any]] = {
    "resnet18": dict(stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock),
    "resnet34": dict(stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock),
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock),
    "resnet101": dict(stage_sizes=(3, 4, 23, 3), block_cls=BottleneckBlock),
    # Same code, one block a stage and 8 base filters: compiles and steps in well under a second on CPU.
    "tiny": dict(stage_sizes=(1, 1, 1, 1), block_cls=BottleneckBlock, num_filters=8),
}
