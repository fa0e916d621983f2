"""Converting a CTranslate2 Whisper model (faster-whisper's `model.bin` + `config.json`) into the parameters of
transformers' Flax Whisper, so that the same weights run on both ASR backends.

`model.bin` (binary format version 6, written by ctranslate2/specs/model_spec.py `_serialize`) is, all
little-endian: uint32 version; string spec name; uint32 spec revision; uint32 variable count; per variable:
string name, uint8 rank, uint32 per dimension, uint8 dtype id (float32, int8, int16, int32, float16, bfloat16),
uint32 byte count, the bytes; then uint32 alias count and (alias, target) string pairs. A string is a uint16
length (terminating NUL included), the UTF-8 bytes and the NUL.

CTranslate2 stores PyTorch layouts ([out, in] linear weights, [out, in, width] convolutions) and fuses
attention projections: self-attention's `linear_0` is q, k and v stacked ([3d, d], the k part of its bias is
zero: Whisper's k projection has none), cross-attention's `linear_0` is q and `linear_1` k and v stacked.
Here each is split and transposed into Flax's [in, out] kernels; float16 weights become float32 exactly
(every float16 value is a float32 value). Quantised models (int8 weights with scales) are refused: their
dequantised weights are not the trained ones, so agreement between backends would say nothing.
"""

from __future__ import annotations

import os
import re
import struct
from typing import Any

import numpy as np

from lanser_jax.utils import fileio

FORMAT_VERSION = 6
SPEC_NAME = "WhisperSpec"
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")  # CTranslate2's DataType order


class ConversionError(ValueError):
  """A CTranslate2 model that this converter cannot turn into Flax Whisper parameters."""


def is_ct2_model(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "model.bin")) and os.path.isfile(os.path.join(path, "config.json"))


def read_model_bin(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """({variable name: array in its stored dtype}, {alias: variable name}) of a CTranslate2 model.bin."""
  data = fileio.read_bytes(path)
  pos = 0

  def take(fmt: str):
    nonlocal pos
    value = struct.unpack_from("<" + fmt, data, pos)
    pos += struct.calcsize("<" + fmt)
    return value[0] if len(value) == 1 else value

  def string() -> str:
    nonlocal pos
    n = take("H")
    text = data[pos:pos + n - 1].decode("utf-8")
    pos += n
    return text

  version = take("I")
  if version != FORMAT_VERSION:
    raise ConversionError(f"{path}: CTranslate2 binary format version {version}; this reader knows version "
                          f"{FORMAT_VERSION} (ctranslate2 >= 3): re-convert the model with a recent ctranslate2")
  name, _ = string(), take("I")
  if name != SPEC_NAME:
    raise ConversionError(f"{path}: a CTranslate2 {name!r} model, not a Whisper model ({SPEC_NAME})")
  variables = {}
  for _ in range(take("I")):
    var = string()
    shape = tuple(take("I") for _ in range(take("B")))
    dtype_id, nbytes = take("B"), take("I")
    dtype = _DTYPES[dtype_id]
    if dtype == "bfloat16":
      import ml_dtypes  # jax's dependency
      np_dtype = np.dtype(ml_dtypes.bfloat16)
    else:
      np_dtype = np.dtype(dtype)
    variables[var] = np.frombuffer(data, np_dtype, nbytes // np_dtype.itemsize, pos).reshape(shape)
    pos += nbytes
  aliases = {}
  for _ in range(take("I")):
    alias = string()
    aliases[alias] = string()
  if pos != len(data):
    raise ConversionError(f"{path}: {len(data) - pos} bytes left after the last alias: not a format-"
                          f"{FORMAT_VERSION} file, or truncated")
  return variables, aliases


def _weight(variables, name: str) -> np.ndarray:
  if name + "_scale" in variables or variables[name].dtype == np.int8:
    raise ConversionError(f"{name} is quantised (int8); convert the model again with --quantization float16 "
                          "or float32 (ct2-transformers-converter) to run it on the jax backend")
  return np.asarray(variables[name], np.float32)


def _dense(variables, prefix: str, rows: slice | None = None, bias: bool = True) -> dict[str, np.ndarray]:
  weight = _weight(variables, prefix + "/weight")
  rows = rows or slice(None)
  out = {"kernel": np.ascontiguousarray(weight[rows].T)}
  if bias:
    out["bias"] = _weight(variables, prefix + "/bias")[rows]
  return out


def _norm(variables, prefix: str) -> dict[str, np.ndarray]:
  return {"scale": _weight(variables, prefix + "/gamma"), "bias": _weight(variables, prefix + "/beta")}


def _attention(variables, prefix: str, d: int, cross: bool) -> dict[str, Any]:
  """q/k/v/out projections of a (self- or cross-) attention block; the k bias must be the zeros CTranslate2
  stores for it."""
  if cross:
    q_name, kv_name, out_name, k_rows, v_rows = (prefix + "/linear_0", prefix + "/linear_1", prefix + "/linear_2",
                                                  slice(0, d), slice(d, 2 * d))
    q = _dense(variables, q_name)
  else:
    kv_name, out_name, k_rows, v_rows = prefix + "/linear_0", prefix + "/linear_1", slice(d, 2 * d), slice(2 * d, 3 * d)
    q = _dense(variables, kv_name, slice(0, d))
  k_bias = _weight(variables, kv_name + "/bias")[k_rows]
  if np.any(k_bias):
    raise ConversionError(f"{kv_name}/bias: the key projection has a non-zero bias, which Whisper's has not")
  return {"q_proj": q, "k_proj": _dense(variables, kv_name, k_rows, bias=False),
          "v_proj": _dense(variables, kv_name, v_rows), "out_proj": _dense(variables, out_name)}


def _scalar(variables, name: str) -> int:
  return int(np.asarray(variables[name]).reshape(()))


def _layer(variables, p: str, d: int, cross: bool) -> dict[str, Any]:
  """One encoder layer (`cross=False`) or decoder layer (with its cross-attention) under prefix `p`."""
  layer = {"self_attn": _attention(variables, p + "/self_attention", d, cross=False),
           "self_attn_layer_norm": _norm(variables, p + "/self_attention/layer_norm"),
           "fc1": _dense(variables, p + "/ffn/linear_0"), "fc2": _dense(variables, p + "/ffn/linear_1"),
           "final_layer_norm": _norm(variables, p + "/ffn/layer_norm")}
  if cross:
    layer.update(encoder_attn=_attention(variables, p + "/attention", d, cross=True),
                 encoder_attn_layer_norm=_norm(variables, p + "/attention/layer_norm"))
  return layer


def flax_params(variables: dict[str, np.ndarray]) -> dict[str, Any]:
  """The FlaxWhisperForConditionalGeneration parameter tree (float32) of a CTranslate2 Whisper's variables."""
  d = variables["encoder/layer_norm/gamma"].shape[0]
  conv = lambda p: {"kernel": np.ascontiguousarray(_weight(variables, p + "/weight").transpose(2, 1, 0)),
                    "bias": _weight(variables, p + "/bias")}
  encoder = {"conv1": conv("encoder/conv1"), "conv2": conv("encoder/conv2"),
             "embed_positions": {"embedding": _weight(variables, "encoder/position_encodings/encodings")},
             "layer_norm": _norm(variables, "encoder/layer_norm"),
             "layers": {str(i): _layer(variables, f"encoder/layer_{i}", d, cross=False)
                        for i in range(_count_layers(variables, "encoder"))}}
  decoder = {"embed_tokens": {"embedding": _weight(variables, "decoder/embeddings/weight")},
             "embed_positions": {"embedding": _weight(variables, "decoder/position_encodings/encodings")},
             "layer_norm": _norm(variables, "decoder/layer_norm"),
             "layers": {str(i): _layer(variables, f"decoder/layer_{i}", d, cross=True)
                        for i in range(_count_layers(variables, "decoder"))}}
  return {"model": {"encoder": encoder, "decoder": decoder}}


def _count_layers(variables, side: str) -> int:
  pattern = re.compile(side + r"/layer_(\d+)/")  # not layer_norm
  return len({m.group(1) for m in map(pattern.match, variables) if m})


def whisper_config(variables: dict[str, np.ndarray], ct2_config: dict[str, Any], vocab: dict[str, int]
                   ) -> dict[str, Any]:
  """transformers.WhisperConfig keyword arguments of a CTranslate2 Whisper (dimensions from the arrays, special
  tokens from the tokenizer's vocabulary, suppress lists from config.json)."""
  if "decoder/projection/weight" in variables:  # an untied output layer: Flax Whisper always ties it
    raise ConversionError("decoder/projection/weight is stored apart from decoder/embeddings/weight; Flax "
                          "Whisper ties them, so this model cannot be converted")
  embed = variables["decoder/embeddings/weight"]
  eot = vocab["<|endoftext|>"]
  sot = vocab["<|startoftranscript|>"]
  return dict(
      vocab_size=embed.shape[0], num_mel_bins=variables["encoder/conv1/weight"].shape[1], d_model=embed.shape[1],
      encoder_layers=_count_layers(variables, "encoder"), decoder_layers=_count_layers(variables, "decoder"),
      encoder_attention_heads=_scalar(variables, "encoder/num_heads"),
      decoder_attention_heads=_scalar(variables, "decoder/num_heads"),
      encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
      decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
      max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
      max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
      pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
      suppress_tokens=list(ct2_config.get("suppress_ids") or []),
      begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin") or []),
      tie_word_embeddings=True)


def load_ct2_whisper(path: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """(WhisperConfig kwargs, float32 Flax parameters, CTranslate2 config.json) of a faster-whisper model folder."""
  tokenizer_path = os.path.join(path, "tokenizer.json")
  if not os.path.isfile(tokenizer_path):
    raise ConversionError(f"{path}: no tokenizer.json beside model.bin (faster-whisper folders ship one)")
  ct2_config = fileio.read_json(os.path.join(path, "config.json"))
  tokenizer = fileio.read_json(tokenizer_path)
  vocab = dict(tokenizer["model"]["vocab"])
  vocab.update({t["content"]: t["id"] for t in tokenizer.get("added_tokens", [])})
  variables, _ = read_model_bin(os.path.join(path, "model.bin"))
  return whisper_config(variables, ct2_config, vocab), flax_params(variables), ct2_config


def ct2_variables(params: dict[str, Any]) -> dict[str, np.ndarray]:
  """The inverse of `flax_params`: CTranslate2's fused float32 arrays of a Flax Whisper tree (for the lossless
  round-trip check, and to compare a Hugging Face checkpoint with a converted one array by array)."""
  out = {}
  t = lambda x: np.asarray(x, np.float32).T

  def attention(prefix, p, cross):
    zeros = np.zeros_like(np.asarray(p["q_proj"]["bias"], np.float32))
    if cross:
      out[prefix + "/linear_0/weight"], out[prefix + "/linear_0/bias"] = t(p["q_proj"]["kernel"]), p["q_proj"]["bias"]
      out[prefix + "/linear_1/weight"] = np.concatenate([t(p["k_proj"]["kernel"]), t(p["v_proj"]["kernel"])])
      out[prefix + "/linear_1/bias"] = np.concatenate([zeros, p["v_proj"]["bias"]])
      last = prefix + "/linear_2"
    else:
      out[prefix + "/linear_0/weight"] = np.concatenate([t(p[k]["kernel"]) for k in ("q_proj", "k_proj", "v_proj")])
      out[prefix + "/linear_0/bias"] = np.concatenate([p["q_proj"]["bias"], zeros, p["v_proj"]["bias"]])
      last = prefix + "/linear_1"
    out[last + "/weight"], out[last + "/bias"] = t(p["out_proj"]["kernel"]), p["out_proj"]["bias"]

  def norm(prefix, p):
    out[prefix + "/gamma"], out[prefix + "/beta"] = p["scale"], p["bias"]

  def layer(prefix, p, cross):
    attention(prefix + "/self_attention", p["self_attn"], False)
    norm(prefix + "/self_attention/layer_norm", p["self_attn_layer_norm"])
    if cross:
      attention(prefix + "/attention", p["encoder_attn"], True)
      norm(prefix + "/attention/layer_norm", p["encoder_attn_layer_norm"])
    for k, name in (("fc1", "linear_0"), ("fc2", "linear_1")):
      out[f"{prefix}/ffn/{name}/weight"], out[f"{prefix}/ffn/{name}/bias"] = t(p[k]["kernel"]), p[k]["bias"]
    norm(prefix + "/ffn/layer_norm", p["final_layer_norm"])

  enc, dec = params["model"]["encoder"], params["model"]["decoder"]
  for conv in ("conv1", "conv2"):
    out[f"encoder/{conv}/weight"] = np.asarray(enc[conv]["kernel"], np.float32).transpose(2, 1, 0)
    out[f"encoder/{conv}/bias"] = enc[conv]["bias"]
  out["encoder/position_encodings/encodings"] = enc["embed_positions"]["embedding"]
  norm("encoder/layer_norm", enc["layer_norm"])
  for i, p in enc["layers"].items():
    layer(f"encoder/layer_{i}", p, False)
  out["decoder/embeddings/weight"] = dec["embed_tokens"]["embedding"]
  out["decoder/position_encodings/encodings"] = dec["embed_positions"]["embedding"]
  norm("decoder/layer_norm", dec["layer_norm"])
  for i, p in dec["layers"].items():
    layer(f"decoder/layer_{i}", p, True)
  return {k: np.asarray(v, np.float32) for k, v in out.items()}
