"""label.text_source=manifest labels the manifest's own text byte for byte, and the compare command reports
the WER of ASR text against it and the agreement of the two weak label sets (fake ASR and labeler)."""

import json
import os

import numpy as np
import pytest
import soundfile

from lanser_jax.tools import compare_labellings as compare
from lanser_jax.utils import cli
from lanser_jax.stages import chain, pieces, stage
from lanser_jax.stages import label
from lanser_jax.stages import defaults

# Unusual bytes on purpose: double spaces, a non-breaking space, an ellipsis, trailing whitespace.
REFERENCE = {
    "u_happy": "I am  so happy\u00a0today\u2026 ",
    "u_angry": "This makes me so ANGRY!",
    "u_sad": "my dog died, I am sad",
}
# What the fake ASR hears, by the clip's amplitude: one word wrong in u_sad and a different label.
HEARD = {5: "I am so happy today", 7: "this makes me so angry", 3: "my dog dined I am glad"}
AMPLITUDE = {"u_happy": 0.5, "u_angry": 0.7, "u_sad": 0.3, "u_notext": 0.5}


class FakeTranscriber:
  def transcribe(self, waves):
    return [{"text": HEARD[int(round(float(np.max(np.abs(w))) * 10))], "language": "en", "avg_logprob": -0.2,
             "no_speech_prob": 0.01, "compression_ratio": 1.0} for w in waves]


class RecordingLabeler:
  label_names = ["anger", "joy", "sadness"]

  def __init__(self):
    self.seen = []

  def score(self, texts):
    self.seen.extend(texts)
    s = np.full((len(texts), 3), 0.1, np.float32)
    for i, t in enumerate(texts):
      t = t.lower()
      s[i, 1 if ("happy" in t or "glad" in t) else 0 if "angry" in t else 2] = 0.8
    return s


def _corpus(tmp_path):
  root = tmp_path / "corpus"
  root.mkdir()
  with open(root / "list.jsonl", "w", encoding="utf-8") as f:
    for utt, amp in AMPLITUDE.items():
      x = (amp * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
      soundfile.write(str(root / f"{utt}.wav"), x, 16000)
      row = {"utt_id": utt, "audio": f"{utt}.wav"}
      if utt in REFERENCE:
        row["text"] = REFERENCE[utt]
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  return str(root / "list.jsonl")


def _config(list_path, text_source):
  c = defaults.default_config()
  c.num_pieces = 2
  c.manifest.adapter, c.manifest.root = "list", list_path
  c.label.text_source = text_source
  c.stages = ("manifest", "label") if text_source == "manifest" else ("manifest", "asr", "label")
  c.asr.batch_size = 2
  return c


def _labels(workdir):
  return {r["utt_id"]: r for p in sorted(os.listdir(os.path.join(workdir, "labels")))
          if p.startswith("labels-") for r in pieces.read_jsonl(os.path.join(workdir, "labels", p))}


def test_manifest_text_is_labelled_byte_for_byte(tmp_path):
  workdir = str(tmp_path / "ref")
  labeler = RecordingLabeler()
  chain.run_stages(_config(_corpus(tmp_path), "manifest"), workdir, "all", (0, 1), labeler=labeler)
  assert not os.path.exists(os.path.join(workdir, "asr"))  # no ASR needed
  labels = _labels(workdir)
  assert set(labels) == set(REFERENCE)
  for utt, text in REFERENCE.items():
    assert labels[utt]["text"].encode("utf-8") == text.encode("utf-8")
  assert sorted(t.encode() for t in labeler.seen) == sorted(t.encode() for t in REFERENCE.values())
  errors = list(pieces.read_jsonl(os.path.join(workdir, "labels", "errors.jsonl")))
  assert [(e["utt_id"], e["reason"]) for e in errors] == [
      ("u_notext", "no text in the manifest (label.text_source='manifest')")]
  summary = pieces.read_json(os.path.join(workdir, "labels", "summary.json"))
  assert summary["in"] == 4 and summary["written"] == 3 and summary["rejected"] == 1


def test_bad_text_source_is_named(tmp_path):
  c = _config(_corpus(tmp_path), "subtitles")
  with pytest.raises(ValueError, match="text_source='subtitles'"):
    stage.run(label.STAGE, c, str(tmp_path / "w"), (0, 1), labeler=RecordingLabeler())


def test_compare_reports_wer_and_agreement(tmp_path):
  list_path = _corpus(tmp_path)
  ref, asr = str(tmp_path / "ref"), str(tmp_path / "asr")
  chain.run_stages(_config(list_path, "manifest"), ref, "all", (0, 1), labeler=RecordingLabeler())
  chain.run_stages(_config(list_path, "asr"), asr, "all", (0, 1), labeler=RecordingLabeler(),
                 transcriber=FakeTranscriber())
  assert cli.call(compare, [f"--workdir_a={ref}", f"--workdir_b={asr}", f"--out={tmp_path / 'c.json'}"]) == 0
  result = json.load(open(tmp_path / "c.json"))
  a, b = result["workdirs"]["a"], result["workdirs"]["b"]
  assert a["text_source"] == "manifest" and b["text_source"] == "asr"
  assert a["labelled_text_wer"] == 0.0
  # Reference words 5 + 5 + 6 = 16 (case and punctuation ignored); "died"->"dined", "sad"->"glad".
  assert b["labelled_text_wer"] == pytest.approx(2 / 16) and b["labelled_text_wer_utterances"] == 3
  assert b["asr_wer_utterances"] == 3 and b["asr_wer"] == pytest.approx(2 / 16)  # u_notext has no reference
  g = result["agreement"]
  assert g["both_labelled"] == 3 and g["only_b"] == 1 and g["only_a"] == 0  # ASR labels u_notext too
  assert g["label_agreement"] == pytest.approx(2 / 3)  # u_sad: sadness from the reference, joy from ASR
  assert g["per_label_of_a"]["sadness"] == {"count_a": 1, "agreement": 0.0}
  assert g["same_text"] == 0 and g["mean_total_variation"] == pytest.approx(0.7 / 3, abs=1e-5)
  assert compare.cohen_kappa(np.array([0, 1, 2]), np.array([0, 1, 2]), 3) == 1.0
