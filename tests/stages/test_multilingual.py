"""Multilingual weak labels offline: a tiny random XLM-RoBERTa NLI checkpoint (save_pretrained, loaded by the
labeler through the same from_pretrained path as joeddav/xlm-roberta-large-xnli), the multilingual config,
and the label stage choosing each transcript's template by its detected language."""

import os

import numpy as np
import pytest
import soundfile
import transformers

from lanser_jax import config_lib
from lanser_jax.labelers import entailment, hf
from lanser_jax import labelers
from lanser_jax.stages import chain, pieces
from lanser_jax.stages import label as label_lib

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "lanser_jax", "experiments", "labeling", "multilingual.py")
# What the fake ASR hears, by the clip's amplitude: text and detected language.
HEARD = {5: ("I am so happy today", "en"), 7: ("estoy muy enojado contigo", "es"),
         3: ("je suis triste", "fr"), 4: ("this is terrible news", "en")}


class FakeTranscriber:
  def transcribe(self, waves):
    out = []
    for w in waves:
      text, language = HEARD[int(round(float(np.max(np.abs(w))) * 10))]
      out.append({"text": text, "language": language, "avg_logprob": -0.2, "no_speech_prob": 0.01,
                  "compression_ratio": 1.0})
    return out


def _words(*texts):
  out = set()
  for t in texts:
    out.update(t.lower().replace(".", " ").replace("'", " ' ").split())
  return sorted(out) + [".", "'"]


def _tiny_xlmr(path, templates):
  taxonomy = labelers.load_taxonomy("ekman7")
  tokenizer = hf.build_word_level_tokenizer(
      _words(*[t.format(l) for t in templates for l in taxonomy], *[h for h, _ in HEARD.values()]), path)
  config = transformers.XLMRobertaConfig(
      vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
      intermediate_size=64, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id,
      bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, initializer_range=0.3,
      id2label=dict(enumerate(hf.NLI_LABELS)), label2id={l: i for i, l in enumerate(hf.NLI_LABELS)})
  transformers.FlaxXLMRobertaForSequenceClassification(config, seed=0).save_pretrained(path, safe_serialization=True)


def _config(model_path, **label):
  c = config_lib.load_python_file(CONFIG, kind="config").get_config("languages=en+es")
  c.labeler.model = model_path
  c.labeler.max_length, c.labeler.batch_size, c.labeler.length_buckets = 40, 2, (16, 24)
  c.num_pieces, c.asr.batch_size = 2, 2
  c.manifest.root = ""
  for key, value in label.items():
    c.label[key] = value
  return c


def test_multilingual_config_and_labeler(tmp_path):
  c = config_lib.load_python_file(CONFIG, kind="config").get_config(None)
  assert c.labeler.model == "joeddav/xlm-roberta-large-xnli" and c.asr.language == ""
  assert len(c.labeler.templates) == len(c.labeler.template_languages) == len(c.label.languages) == 6
  with pytest.raises(ValueError, match="no template for.*'xx'"):
    config_lib.load_python_file(CONFIG, kind="config").get_config("languages=en+xx")
  c = _config(str(tmp_path))
  _tiny_xlmr(str(tmp_path), c.labeler.templates)
  labeler = labelers.build_labeler(c.labeler)
  assert isinstance(labeler, labelers.MultilingualLabeler) and labeler.languages == ("en", "es")
  assert type(labeler.by_language["es"].model.model).__name__ == "FlaxXLMRobertaForSequenceClassification"
  assert labeler.by_language["es"].templates == ("La emoción de la conversación es {}.",)
  assert labeler.language_problem("fr").startswith("no template for language 'fr'")
  texts, languages = ["I am so happy today", "estoy muy enojado contigo"], ["en", "es"]
  scores = labeler.score(texts, languages)
  tokenizer = hf.load_tokenizer(str(tmp_path))
  model = labeler.by_language["en"].model
  for i, (text, language) in enumerate(zip(texts, languages)):  # each with its own language's template
    single = entailment.EntailmentLabeler(model, tokenizer, labeler.label_names,
                                          dict(en=c.labeler.templates[0], es=c.labeler.templates[1])[language],
                                          max_length=40, batch_size=2, length_buckets=(16, 24))
    np.testing.assert_allclose(scores[i], single.score([text])[0], atol=1e-5)
    other = entailment.EntailmentLabeler(model, tokenizer, labeler.label_names,
                                         c.labeler.templates[1 - ["en", "es"].index(language)],
                                         max_length=40, batch_size=2, length_buckets=(16, 24))
    assert np.abs(other.score([text])[0] - scores[i]).max() > 1e-3  # the template choice matters
  c.labeler.template_languages = ("en",)
  with pytest.raises(ValueError, match="one language per template"):
    labelers.build_labeler(c.labeler)


def test_label_stage_picks_the_template_by_detected_language(tmp_path):
  model_path = str(tmp_path / "xlmr")
  c = _config(model_path, languages=())  # no language filter: the labeler itself rejects 'fr'
  _tiny_xlmr(model_path, c.labeler.templates)
  root = tmp_path / "corpus"
  root.mkdir()
  for name, amp in (("a_en", 0.5), ("b_es", 0.7), ("c_fr", 0.3), ("d_en", 0.4)):
    x = (amp * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    soundfile.write(str(root / f"{name}.wav"), x, 16000)
  c.manifest.root = str(root)
  c.stages = ("manifest", "asr", "label")
  workdir = str(tmp_path / "w")
  chain.run_stages(c, workdir, "all", (0, 1), transcriber=FakeTranscriber())
  labels = {r["utt_id"]: r for p in sorted(os.listdir(os.path.join(workdir, "labels")))
            if p.startswith("labels-") for r in pieces.read_jsonl(os.path.join(workdir, "labels", p))}
  assert sorted(labels) == ["a_en", "b_es", "d_en"]
  errors = list(pieces.read_jsonl(os.path.join(workdir, "labels", "errors.jsonl")))
  assert [e["utt_id"] for e in errors] == ["c_fr"] and "no template for language 'fr'" in errors[0]["reason"]
  reference = labelers.build_labeler(c.labeler)
  for utt, language in (("a_en", "en"), ("b_es", "es"), ("d_en", "en")):
    want = reference.by_language[language].score([labels[utt]["text"]])[0]
    np.testing.assert_allclose(labels[utt]["scores"], want, atol=1e-5)
  c2 = _config(model_path)  # the config's own filter (label.languages = en, es) rejects 'fr' first
  assert tuple(c2.label.languages) == ("en", "es")
  assert label_lib.transcript_problem({"text": "je suis triste", "language": "fr"}, c2.label).startswith(
      "language 'fr' not in label.languages")
