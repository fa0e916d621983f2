"""The model zoo by name: ResNets (resnet.py), Conformers (conformer.py) and spectrogram transformers
(spectrogram_transformer.py), all called the same way and returning (logits, embedding); and the one
inference-mode forward pass over window batches (`window_forward`).

`python -m lanser_jax.models` prints the parameter counts of every architecture (`--model=resnet50
--num_classes=7` for one).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lanser_jax.models import conformer, resnet, spectrogram_transformer

ARCHITECTURES = tuple(resnet.ARCHS) + tuple(conformer.SIZES) + tuple(spectrogram_transformer.SIZES)

# Published parameter counts printed beside ours (docs/backbones.md says what each one includes).
REFERENCES = {
    "resnet50": "torchvision ImageNet ResNet-50: 25,557,032 with a 1000-class head",
    "conformer_s": "Gulati et al. 2020 Table 1: 10.3M with the RNN-T decoder (1 LSTM layer, 320)",
    "conformer_m": "Gulati et al. 2020 Table 1: 30.7M with the RNN-T decoder (1 LSTM layer, 640)",
    "spectrogram_transformer_b16": "timm vit_base_patch16_224: 86,567,656 with 3 input channels, 197 learned "
                                   "positions, [CLS] and a 1000-class head",
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
        raise ValueError(f"config.model.patch_size/patch_stride apply to spectrogram_transformer_* models, "
                         f"not {name!r}")
      return conformer.create(name, num_classes, dropout_rate, jnp.dtype(dtype))
    return spectrogram_transformer.create(name, num_classes, dropout_rate, jnp.dtype(dtype),
                                          patch_size, patch_stride)
  if name not in resnet.ARCHS:
    raise ValueError(f"config.model.name={name!r} is not one of {ARCHITECTURES}")
  return resnet.ResNet(num_classes=num_classes, width=width, dropout_rate=dropout_rate,
                       dtype=jnp.dtype(dtype), **resnet.ARCHS[name])


def model_from_config(config, num_classes: int) -> nn.Module:
  """create_model with every config.model key (a config saved before patch_size existed still loads)."""
  m = config.model
  return create_model(m.name, num_classes, m.width, m.dropout_rate, config.dtype,
                      m.get("patch_size", 0), m.get("patch_stride", 0))


def window_forward(model: nn.Module, normalizer):
  """(variables, window batch) -> (logits, embedding) in inference mode, for a batch of float16 crops +
  `length` as lanser_jax/input_pipeline/windows.py fills it; `normalizer` (pipeline.Normalizer) finishes the input
  on the device. Evaluation (train.make_eval_step) and serving (serving.classifier.Classifier) both apply this, so
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
