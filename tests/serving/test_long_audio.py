"""Nothing dropped silently: a file longer than what is decoded at once is classified whole, streamed in
bounded memory, with the numbers of the whole log-mel through the evaluation windows; a --max_seconds cut is
said in a column and on stderr."""

import csv
import json

import numpy as np
import pytest
import soundfile

from conftest import long_recording
from lanser_jax.serving import classifier, embed, predict
from lanser_jax.utils import cli

pytestmark = pytest.mark.slow  # trains the shared tiny run (tests/serving/conftest.py)


@pytest.fixture(scope="module")
def long_wav(served_run):
  path = str(served_run["root"] / "long.wav")
  long_recording(path, served_run["wavs"], 75.0)
  return path


def test_long_file_is_streamed_whole_with_the_evaluation_numbers(served_run, long_wav, monkeypatch):
  clf = classifier.load(served_run["workdir"], batch_size=8)
  whole_mel = clf.log_mel_transform.one(__import__("soundfile").read(long_wav, dtype="float32")[0])
  want_logits, want_emb = clf.forward_log_mel([whole_mel.astype(np.float16).astype(np.float32)])
  monkeypatch.setattr(classifier, "IN_MEMORY_SECONDS", 20.0)  # decode at most 20 s at once: stream the rest
  small = classifier.load(served_run["workdir"], batch_size=8)
  clip = small.read_clip(long_wav)
  assert clip.log_mel is None  # too long to decode at once
  logits, emb = small.forward_clips([clip])
  assert clip.seconds == pytest.approx(75.0, abs=1e-3)
  np.testing.assert_allclose(logits[0], want_logits[0], atol=2e-5)
  np.testing.assert_allclose(emb[0], want_emb[0], atol=2e-5)
  np.testing.assert_allclose(small.predict(long_wav).logits, want_logits[0], atol=2e-5)


def test_cut_is_said_in_a_column_and_on_stderr(served_run, long_wav, tmp_path, capsys):
  out = tmp_path / "p.csv"
  assert cli.call(predict, [f"--workdir={served_run['workdir']}", "--format=csv", f"--output={out}",
                            "--max_seconds=30", long_wav]) == 0
  (got,) = list(csv.DictReader(out.open()))
  assert float(got["seconds"]) == pytest.approx(30.0) and float(got["cropped_seconds"]) == pytest.approx(45.0)
  err = capsys.readouterr().err
  assert f"cut: {long_wav}: classified the first 30.0 s of 75.0 s; 45.0 s cut by --max_seconds" in err
  # The default classifies the whole file and says so.
  out2 = tmp_path / "p.jsonl"
  assert cli.call(predict, [f"--workdir={served_run['workdir']}", "--format=jsonl", f"--output={out2}",
                            long_wav]) == 0
  row = json.loads(out2.read_text())
  assert row["seconds"] == pytest.approx(75.0) and row["cropped_seconds"] == 0.0
  assert "cut:" not in capsys.readouterr().err


def test_embed_cut_is_said_in_the_output_and_on_stderr(served_run, long_wav, tmp_path, capsys):
  manifest = tmp_path / "m.jsonl"
  manifest.write_text(json.dumps({"utt_id": "long", "audio": long_wav}) + "\n")
  out = tmp_path / "e.npz"
  assert cli.call(embed, [f"--workdir={served_run['workdir']}", f"--manifest={manifest}", f"--output={out}",
                          "--max_seconds=30"]) == 0
  assert "cut: long: embedded the first 30.0 s; 45.0 s cut by --max_seconds" in capsys.readouterr().err
  got = np.load(out)  # and in the output, beside the embedding
  assert got["seconds"].tolist() == [30.0] and got["cropped_seconds"].tolist() == [45.0]
  out2 = tmp_path / "e.jsonl"  # the default embeds the whole utterance and says so
  assert cli.call(embed, [f"--workdir={served_run['workdir']}", f"--manifest={manifest}", f"--output={out2}"]) == 0
  row = json.loads(out2.read_text())
  assert row["seconds"] == pytest.approx(75.0) and row["cropped_seconds"] == 0.0
  assert "cut:" not in capsys.readouterr().err


def test_a_long_file_that_fails_while_streamed_is_a_row_not_a_crash(served_run, long_wav, tmp_path, monkeypatch):
  monkeypatch.setattr(classifier, "IN_MEMORY_SECONDS", 20.0)
  quiet = str(tmp_path / "nan.wav")  # 25 s of tone, then NaN: the first 20 s decode, the stream finds the NaN
  x = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000 * 30) / 16000).astype(np.float32)
  x[16000 * 25:] = np.nan
  soundfile.write(quiet, x, 16000, subtype="FLOAT")
  out = tmp_path / "p.jsonl"
  assert cli.call(predict, [f"--workdir={served_run['workdir']}", "--format=jsonl", f"--output={out}",
                            quiet, long_wav]) == 0
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert rows[0]["error"] == f"{quiet}: audio holds NaN or inf samples"
  assert rows[1]["seconds"] == pytest.approx(75.0)
