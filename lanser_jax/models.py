"""The model zoo: ResNets for one-channel log-mel spectrograms (Flax Linen), the other backbones by name, and
the one inference-mode forward pass over window batches (`window_forward`).

The layout follows the ImageNet ResNets (He et al. 2016; torchvision's v1.5 with the stride in the 3x3 conv),
so ResNet-50 here has the ImageNet ResNet-50's parameters less the two input channels of its stem. Time is the
first spatial axis, mel bins the second. Padded frames (mask == False) are left out of the global average pool,
so a short utterance padded to the crop length pools over its real frames only.

`create_model` also builds the other backbones by name: `conformer*` (lanser_jax/conformer.py) and `ast*`
(lanser_jax/spectrogram_transformer.py), with the same call and return. Run `python -m lanser_jax.models`
to print the parameter counts of every architecture (`--model=resnet50 --num_classes=7` for one).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lanser_jax import conformer, spectrogram_transformer

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
    y = nn.max_pool(y, (3, 3), strides=(2, 2), padding="SAME")
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


_ARCHS: dict[str, dict[str, Any]] = {
    "resnet18": dict(stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock),
    "resnet34": dict(stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock),
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock),
    "resnet101": dict(stage_sizes=(3, 4, 23, 3), block_cls=BottleneckBlock),
    # Same code, one block a stage and 8 base filters: compiles and steps in well under a second on CPU.
    "tiny": dict(stage_sizes=(1, 1, 1, 1), block_cls=BottleneckBlock, num_filters=8),
}
ARCHITECTURES = tuple(_ARCHS) + tuple(conformer.SIZES) + tuple(spectrogram_transformer.SIZES)

# Published parameter counts printed beside ours (see README "Backbones" for what each one includes).
REFERENCES = {
    "resnet50": "torchvision ImageNet ResNet-50: 25,557,032 with a 1000-class head",
    "conformer_s": "Gulati et al. 2020 Table 1: 10.3M with the RNN-T decoder (1 LSTM layer, 320)",
    "conformer_m": "Gulati et al. 2020 Table 1: 30.7M with the RNN-T decoder (1 LSTM layer, 640)",
    "ast": "timm vit_base_patch16_224: 86,567,656 with 3 input channels, 197 learned positions, "
           "[CLS] and a 1000-class head",
}


def create_model(name: str, num_classes: int, width: float = 1.0, dropout_rate: float = 0.0,
                 dtype: str = "float32", patch_size: int = 0, patch_stride: int = 0) -> nn.Module:
  """The backbone `name` (config.model.name) with a `num_classes` head; width applies to ResNets only,
  patch_size / patch_stride (0: the size's default) to the spectrogram transformer only."""
  if name in conformer.SIZES or name in spectrogram_transformer.SIZES:
    if width != 1.0:
      raise ValueError(f"config.model.width={width} applies to ResNets only; {name!r} has fixed sizes "
                       f"(pick another size, e.g. one of {ARCHITECTURES})")
    if name in conformer.SIZES:
      if patch_size or patch_stride:
        raise ValueError(f"config.model.patch_size/patch_stride apply to 'ast*' models, not {name!r}")
      return conformer.create(name, num_classes, dropout_rate, jnp.dtype(dtype))
    return spectrogram_transformer.create(name, num_classes, dropout_rate, jnp.dtype(dtype),
                                          patch_size, patch_stride)
  if name not in _ARCHS:
    raise ValueError(f"config.model.name={name!r} is not one of {ARCHITECTURES}")
  return ResNet(num_classes=num_classes, width=width, dropout_rate=dropout_rate,
                dtype=jnp.dtype(dtype), **_ARCHS[name])


def model_from_config(config, num_classes: int) -> nn.Module:
  """create_model with every config.model key (a config saved before patch_size existed still loads)."""
  m = config.model
  return create_model(m.name, num_classes, m.width, m.dropout_rate, config.dtype,
                      m.get("patch_size", 0), m.get("patch_stride", 0))


def window_forward(model: nn.Module, normalizer):
  """(variables, window batch) -> (logits, embedding) in inference mode, for a batch of float16 crops +
  `length` as input_pipeline/windows.py fills it; `normalizer` (pipeline.Normalizer) finishes the input
  on the device. Evaluation (train.make_eval_step) and serving (inference.Classifier) both apply this, so
  the same windows give the same logits."""

  def forward(variables, batch):
    return model.apply(variables, *normalizer.device(batch), train=False)

  return forward


def param_count(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def count_params(model: nn.Module, frames: int = 300, mel_bins: int = 64) -> dict[str, int]:
  """Parameter counts from abstract shapes (nothing is allocated or computed)."""
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, frames, mel_bins))))
  params = variables["params"]
  head = param_count(params["head"])
  total = param_count(params)
  return {"total": total, "head": head, "body": total - head,
          "batch_stats": param_count(variables.get("batch_stats", {}))}


def _main(argv: Sequence[str] | None = None):
  import argparse
  p = argparse.ArgumentParser(description="Print the parameter counts of the lanser-jax backbones.")
  p.add_argument("--model", default="all", choices=("all",) + ARCHITECTURES)
  p.add_argument("--num_classes", type=int, default=7)
  p.add_argument("--width", type=float, default=1.0)
  p.add_argument("--mel_bins", type=int, default=64)
  p.add_argument("--frames", type=int, default=300)
  args = p.parse_args(argv)
  names = ARCHITECTURES if args.model == "all" else (args.model,)
  for name in names:
    width = args.width if name in _ARCHS else 1.0
    counts = count_params(create_model(name, args.num_classes, width), args.frames, args.mel_bins)
    ref = f"  [{REFERENCES[name]}]" if name in REFERENCES else ""
    print(f"{name} (width {width}, {args.num_classes} classes, {args.mel_bins} mel bins): "
          f"{counts['total']:,} parameters = body {counts['body']:,} + head {counts['head']:,}; "
          f"{counts['batch_stats']:,} batch-norm statistics{ref}")


if __name__ == "__main__":
  _main()
