"""A patch-based spectrogram transformer (a ViT over log-mel patches) with a classification head, in Flax Linen.

Gong et al. 2021 ("AST: Audio Spectrogram Transformer") cut the log-mel spectrogram into 16x16 patches and
run a ViT over them (Dosovitskiy et al. 2021). The default here is ViT-B/16's encoder (dim 768, 12 layers,
12 heads, MLP 3072, pre-norm); patch size and stride are configurable (AST overlaps its patches: stride 10).
Ours, not AST's: fixed 2-D sinusoidal position encodings instead of learned ones (any crop length loads
the same checkpoint) and a mean over the real patches instead of a [CLS] token (so padding can be left
out of the pool). Same interface as lanser_jax/models/__init__.py's ResNet:
`model.apply(variables, x [batch, frames, mel_bins], mask [batch, frames]) -> (logits, embedding)`.

Why the names `spectrogram_transformer_b16` and `spectrogram_transformer_tiny`: this is neither the
published AST (ImageNet-initialised by default, overlapping 16x16 patches at stride 10, learned positions, [CLS] and
distillation tokens) nor ViT-B/16 (an image model on 3-channel 224x224 inputs, learned positions, [CLS]),
so neither "ast" nor "vit_b16" names it; the family is this module's, and the size suffix says which
encoder it runs, as conformer_s / conformer_m name the Conformer's sizes: b16 = ViT-Base's encoder over
16x16 patches, tiny = ours, for tests and the CPU demo.

Padding never reaches a real patch: patches are VALID (one that would overlap a padded frame is itself
padded), attention masks padded keys and the pool skips them.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lanser_jax.models import transformer_layers as tl


class EncoderBlock(nn.Module):
  dim: int
  heads: int
  mlp_mult: int = 4
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, keep, *, deterministic: bool):
    y = tl.SelfAttention(self.dim, self.heads, dropout_rate=self.dropout_rate, dtype=self.dtype,
                         name="attention")(nn.LayerNorm(dtype=self.dtype, name="attention_norm")(x), keep,
                                           deterministic=deterministic)
    x = x + nn.Dropout(self.dropout_rate, deterministic=deterministic)(y)
    y = tl.FeedForward(self.dim, self.mlp_mult, nn.gelu, self.dropout_rate, self.dtype, name="mlp")(
        nn.LayerNorm(dtype=self.dtype, name="mlp_norm")(x), deterministic=deterministic)
    return x + y


class SpectrogramTransformer(nn.Module):
  """ViT over spectrogram patches: [batch, frames, mel_bins] -> (logits [batch, classes], embedding)."""
  num_classes: int
  dim: int = 768
  layers: int = 12
  heads: int = 12
  patch_size: int = 16
  patch_stride: int = 16
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None, *, train: bool = False, freeze_backbone: bool = False):
    if x.ndim != 3:
      raise ValueError(f"SpectrogramTransformer expects [batch, frames, mel_bins], got shape {x.shape}")
    p, s = self.patch_size, self.patch_stride
    if min(x.shape[1:]) < p:
      raise ValueError(f"input {x.shape[1:]} (frames, mel_bins) is smaller than one {p}x{p} patch: "
                       f"lower config.model.patch_size")
    lengths = tl.valid_frames(mask, x.shape[0], x.shape[1])
    y = nn.Conv(self.dim, (p, p), (s, s), padding="VALID", dtype=self.dtype, name="patch_embed")(
        x[..., None].astype(self.dtype))  # [batch, time patches, freq patches, dim]
    batch, nt, nf, _ = y.shape
    half = self.dim // 2  # 2-D encoding: first half of the channels encodes time, second half frequency
    pos = jnp.concatenate([
        jnp.broadcast_to(tl.sinusoid(jnp.arange(nt), half)[:, None, :], (nt, nf, half)),
        jnp.broadcast_to(tl.sinusoid(jnp.arange(nf), self.dim - half)[None, :, :], (nt, nf, self.dim - half)),
    ], axis=-1)
    y = (y + pos.astype(self.dtype)).reshape(batch, nt * nf, self.dim)
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    keep_t = tl.token_mask(tl.valid_after_conv(lengths, p, s), nt)  # [batch, nt]
    keep = jnp.repeat(keep_t, nf, axis=1)  # token index = t * nf + f
    for i in range(self.layers):
      y = EncoderBlock(self.dim, self.heads, 4, self.dropout_rate, self.dtype, name=f"block{i + 1}")(
          y, keep, deterministic=not train)
    y = nn.LayerNorm(dtype=self.dtype, name="out_norm")(y)

    embedding = tl.masked_token_mean(y, keep)
    if freeze_backbone:
      embedding = jax.lax.stop_gradient(embedding)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(embedding)
    logits = nn.Dense(self.num_classes, dtype=jnp.float32, name="head")(h)
    return logits, embedding


# "spectrogram_transformer_b16" is ViT-B/16's encoder (Dosovitskiy et al. 2021, Table 1: ViT-Base, 12 layers,
# dim 768, MLP 3072, 12 heads) over 16x16 patches; "spectrogram_transformer_tiny" is ours, for tests and the
# CPU demo.
SIZES: dict[str, dict[str, int]] = {
    "spectrogram_transformer_b16": dict(dim=768, layers=12, heads=12, patch_size=16, patch_stride=16),
    "spectrogram_transformer_tiny": dict(dim=32, layers=2, heads=2, patch_size=8, patch_stride=8),
}


def create(name: str, num_classes: int, dropout_rate: float = 0.0, dtype: Any = jnp.float32,
           patch_size: int = 0, patch_stride: int = 0) -> SpectrogramTransformer:
  """patch_size / patch_stride 0 keep the size's default; a size alone sets the stride to match it."""
  kw = dict(SIZES[name])
  if patch_size:
    kw["patch_size"] = kw["patch_stride"] = patch_size
  if patch_stride:
    kw["patch_stride"] = patch_stride
  return SpectrogramTransformer(num_classes=num_classes, dropout_rate=dropout_rate, dtype=dtype, **kw)
