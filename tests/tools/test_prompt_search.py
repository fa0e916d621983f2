"""Prompt / taxonomy search: a planted best template ranks first through the real search code, and the
command runs end to end on a tiny random NLI checkpoint (ranking there is meaningless, so only checked for
completeness and cost)."""

import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from lanser_jax import labelers
from lanser_jax.tools import prompt_search as search

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLANTED = "The speaker sounds {}."
WORDS = {"angry": "anger", "happy": "happiness", "sad": "sadness", "neutral": "neutral"}  # iemocap4 -> ekman7


class KeywordLabeler:
  """A stand-in model injected through search(make=...): with the planted template among its templates it
  finds the ekman7 word written in the text (a perfect labeler); with any other template its scores are
  random (seeded by the template), so those candidates are near chance. Everything else is the real code."""

  def __init__(self, config):
    self.label_names = labelers.load_taxonomy(config.taxonomy)
    self.templates = tuple(config.templates)
    self.pairs_per_text = len(self.templates) * len(self.label_names)

  def score(self, texts):
    if PLANTED in self.templates:
      return np.asarray([[float(name in text.split()) + 0.01 for name in self.label_names] for text in texts])
    rng = np.random.default_rng(sum(map(ord, "".join(self.templates))))
    return rng.random((len(texts), len(self.label_names)))


def _write_eval(path, n=40, extra=()):
  rng = np.random.default_rng(0)
  with open(path, "w") as f:
    for i in range(n):
      label = list(WORDS)[i % 4]
      words = ["well", "I", "said", WORDS[label], "twice", "today"]
      rng.shuffle(words)
      f.write(json.dumps({"utt_id": f"u{i}", "audio": f"u{i}.wav", "label": label, "text": " ".join(words)}) + "\n")
    for row in extra:
      f.write(json.dumps(row) + "\n")


def test_search_ranks_the_planted_template_first(tmp_path):
  templates = tmp_path / "templates.txt"
  templates.write_text(f"# candidates\nThe emotion of the conversation is {{}}.\n\nI feel {{}}.\n{PLANTED}\n"
                       f"I feel {{}}. | {PLANTED}\n")
  candidates = search.read_templates(str(templates))
  assert candidates[3] == ("I feel {}.", PLANTED)  # an ensemble line
  _write_eval(tmp_path / "eval.jsonl", extra=[
      {"utt_id": "x1", "audio": "x.wav", "label": "sad"},  # no text
      {"utt_id": "x2", "audio": "x.wav", "label": "frustrated", "text": "ugh"}])  # not an iemocap4 class
  texts, labels, skipped = search.read_eval(str(tmp_path / "eval.jsonl"), labelers.load_taxonomy("iemocap4"))
  assert len(texts) == 40 and skipped == {"no text": 1, "label not in the target set": 1}
  assert search.infer_target(labels) == "iemocap4"
  config = ml_collections.ConfigDict(labelers.default_config().to_dict())
  rows = search.search(config, candidates, ["ekman7"], texts, labels, "iemocap4", make=KeywordLabeler,
                       log=lambda m: None)
  assert len(rows) == 4 and [r["rank"] for r in rows] == [1, 2, 3, 4]
  assert rows[0]["templates"] == [PLANTED] and rows[0]["ua"] == 1.0  # fewer pairs than the ensemble
  assert rows[1]["templates"] == ["I feel {}.", PLANTED] and rows[1]["cost"]["pairs"] == 2 * rows[0]["cost"]["pairs"]
  assert all(r["ua"] < 0.7 for r in rows[2:])
  assert rows[0]["cost"]["pairs"] == 40 * 7 and rows[0]["labels_mapped_to_nothing"] == ["disgust", "fear",
                                                                                         "surprise"]
  paths = search.write_outputs(str(tmp_path / "out"), rows, "iemocap4", str(tmp_path / "eval.jsonl"), 40,
                               skipped)
  table = open(paths["md"]).read().splitlines()
  assert table[4].startswith(f"| 1 | ekman7 | {PLANTED} | 1.0000 |")
  assert json.load(open(paths["json"]))["candidates"][0]["templates"] == [PLANTED]
  assert os.path.getsize(paths["png"]) > 1000


def test_bad_inputs_are_named(tmp_path):
  bad = tmp_path / "t.txt"
  bad.write_text("I feel {}.\nno slot here\n")
  with pytest.raises(ValueError, match=r"t.txt:2.*no slot here"):
    search.read_templates(str(bad))
  with pytest.raises(FileNotFoundError, match="nope"):
    search.read_templates(str(tmp_path / "nope"))
  (tmp_path / "e.jsonl").write_text(json.dumps({"utt_id": "a", "audio": "a.wav", "label": "sad"}) + "\n")
  with pytest.raises(ValueError, match="no row with both text"):
    search.read_eval(str(tmp_path / "e.jsonl"), None)
  own = tmp_path / "mine.txt"  # a taxonomy file without a mappings.json entry: shared names map to themselves
  own.write_text("angry\ncalm\n")
  table, dropped = search.mapping_table(["angry", "calm"], str(own), "iemocap4")
  assert list(table) == [labelers.load_taxonomy("iemocap4").index("angry"), -1] and dropped == ["calm"]


@pytest.mark.subprocess
def test_search_command_end_to_end_on_a_tiny_nli_model(tmp_path):
  from lanser_jax.labelers import hf
  words = sorted({w for t in ("I feel {}.", "The speaker sounds {}.") for w in t.lower().replace(".", "")
                  .replace("{}", "").split()} | set(labelers.load_taxonomy("ekman7")) | set(WORDS.values())
                 | {"well", "i", "said", "twice", "today"}) + ["."]
  model_dir = str(tmp_path / "nli")
  tokenizer = hf.build_word_level_tokenizer(words, model_dir)
  hf.save_random_flax_nli_model(model_dir, hf.roberta_nli_config(
      "tiny", len(tokenizer), tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id))
  (tmp_path / "templates.txt").write_text(f"I feel {{}}.\n{PLANTED}\n")
  _write_eval(tmp_path / "eval.jsonl", n=12)
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "-m", "lanser_jax.tools.prompt_search", "--config=lanser_jax/experiments/labeling/local_tiny.py",
       "--config.labeler.kind=entailment", f"--config.labeler.model={model_dir}",
       "--config.labeler.length_buckets=(16,)", "--config.labeler.max_length=32",
       f"--templates={tmp_path / 'templates.txt'}", "--taxonomies=ekman7,iemocap4",
       f"--eval={tmp_path / 'eval.jsonl'}", f"--out={out}"],
      capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.load(open(out / "search.json"))
  assert result["target"] == "iemocap4" and result["num_texts"] == 12
  got = {(r["taxonomy"], tuple(r["templates"])) for r in result["candidates"]}
  assert got == {(t, (p,)) for t in ("ekman7", "iemocap4") for p in ("I feel {}.", PLANTED)}
  for r in result["candidates"]:
    assert r["cost"]["pairs"] == 12 * len(labelers.load_taxonomy(r["taxonomy"])) and r["cost"]["seconds"] > 0
    assert 0.0 <= r["ua"] <= 1.0 and r["num_examples"] == 12
  assert (out / "search.png").stat().st_size > 1000 and "| rank |" in (out / "search.md").read_text()
