"""Restoring a run for inference: 8-device checkpoint on 1 device, the audio front end, the CLIs.

One tiny model is trained (8 fake devices) on features computed from generated WAV files, the way the
labelling stage computes them, and every test below reuses it.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile

from helpers import tiny_config
from lanser_jax.input_pipeline import windows
from lanser_jax.audio import decode
from lanser_jax.serving import embed, predict
from lanser_jax.serving import classifier
from lanser_jax import train
from lanser_jax.utils import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from builders import LABELS, SR, write_clip_features  # noqa: E402,F401

pytestmark = pytest.mark.multidevice  # the module's run is trained on 8 devices and served on 1 and on 8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """WAVs -> log-mel feature folder (as the offline features stage writes it) -> tiny model trained on 8 devices."""
  root = tmp_path_factory.mktemp("inference")
  data_dir, wavs, examples = write_clip_features(root, {"train": 32, "validation": 8}, 2.2, train_shards=2)
  workdir = str(root / "run")
  results = train.train_and_evaluate(
      tiny_config(data_dir, num_train_steps=10, eval_every_steps=10, **{"data.test_split": ""}), workdir)
  return {"workdir": workdir, "wavs": wavs, "results": results, "root": root,
          "validation": examples["validation"]}


@pytest.fixture(scope="module")
def clf(run):
  return classifier.load(run["workdir"], batch_size=16)


@pytest.mark.subprocess
def test_checkpoint_of_eight_devices_restores_on_one_device(run):
  assert jax.device_count() == 8
  mels = [ex.log_mel for ex in run["validation"]]
  clf8 = classifier.load(run["workdir"], devices=jax.devices(), batch_size=16)
  probs8 = np.stack([p.probabilities for p in clf8.predict_log_mel(mels)])
  # The inference path reproduces the training's final whole-utterance evaluation of the best checkpoint.
  cm = np.zeros((len(LABELS), len(LABELS)), np.int64)
  for ex, p in zip(run["validation"], probs8):
    cm[ex.label, int(np.argmax(p))] += 1
  assert cm.tolist() == run["results"]["validation"]["confusion_matrix"]
  assert clf8.step == run["results"]["best_step"]

  out = str(run["root"] / "probs1.npy")
  script = (
      "import sys, jax, numpy as np, lanser_jax\n"
      "from lanser_jax.input_pipeline import pipeline, records\n"
      "assert jax.device_count() == 1, jax.devices()\n"
      "src = pipeline.open_source(sys.argv[2], 'validation')\n"
      "mels = [records.decode(src[i]).log_mel for i in range(len(src))]\n"
      "clf = lanser_jax.load(sys.argv[1])\n"
      "np.save(sys.argv[3], np.stack([p.probabilities for p in clf.predict_log_mel(mels)]))\n")
  flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                   if "xla_force_host_platform_device_count" not in f)
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  proc = subprocess.run([sys.executable, "-c", script, run["workdir"],
                         os.path.join(os.path.dirname(run["workdir"]), "features"), out],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  np.testing.assert_allclose(np.load(out), probs8, atol=1e-5, rtol=0)


def test_checkpoint_of_other_architecture_is_refused(run):
  with pytest.raises(ValueError, match=r"does not fit the model(.|\n)*shape differs: stage1_block1/Conv_0/"
                     r"kernel: checkpoint \(1, 1, 8, 8\) vs model \(1, 1, 4, 4\)"):
    classifier.load(run["workdir"], overrides={"model.width": 0.5})
  with pytest.raises(KeyError, match="model.widht"):
    classifier.load(run["workdir"], overrides={"model.widht": 0.5})


def test_audio_front_end_is_the_training_one(run, clf):
  ex = run["validation"][1]
  path = run["wavs"][ex.utt_id]
  np.testing.assert_array_equal(clf.log_mel(path), ex.log_mel.astype(np.float32))
  ref = clf.predict_log_mel(ex.log_mel)
  from_path = clf.predict(path)
  np.testing.assert_allclose(from_path.probabilities, ref.probabilities, atol=1e-6)
  assert abs(sum(from_path.as_dict().values()) - 1) < 1e-5 and from_path.label in LABELS
  assert [n for n, _ in from_path.top(3)] == sorted(LABELS, key=lambda n: -from_path.as_dict()[n])[:3]
  wave, sr = soundfile.read(path, dtype="float32")
  np.testing.assert_allclose(clf.predict(wave, sample_rate=sr).probabilities, ref.probabilities, atol=1e-6)
  with pytest.raises(ValueError, match="sample_rate"):
    clf.predict(wave)
  both = clf.predict([path, wave], sample_rate=sr)
  assert isinstance(both, list) and len(both) == 2
  emb = clf.embed([path, run["wavs"][run["validation"][2].utt_id]])
  assert emb.shape == (2, 256) and np.all(np.isfinite(emb))
  np.testing.assert_allclose(clf.embed(path), emb[0], atol=1e-6)
  with pytest.raises(decode.AudioError, match="silent"):
    clf.predict(np.zeros(SR, np.float32), sample_rate=SR)


def test_windows_are_averaged_without_recompiling(clf):
  rng = np.random.default_rng(1)
  long = rng.normal(-5, 2, (200, 64)).astype(np.float32)
  starts = windows.window_starts(200, clf.crop_frames, clf.hop_frames)
  assert len(starts) > 3
  crops = [long[s:s + clf.crop_frames] for s in starts]
  logits, emb = clf.forward_log_mel([long])
  w_logits, w_emb = clf.forward_log_mel(crops)  # each window alone is a one-window utterance
  np.testing.assert_allclose(emb[0], w_emb.mean(0), atol=1e-5)
  np.testing.assert_allclose(logits[0], w_logits.mean(0), atol=1e-5)
  p = clf.predict_log_mel(long).probabilities
  np.testing.assert_allclose(p, np.exp(logits[0]) / np.exp(logits[0]).sum(), atol=1e-6)
  clf.forward_log_mel([long[:10]] * 37)  # 37 windows: three batches of 16, the last padded
  assert clf._apply._cache_size() == 1
  with pytest.raises(ValueError, match=r"log-mel 1: expected a \[frames > 0, 64\] matrix"):
    clf.forward_log_mel([long, long[:, :32]])


def test_predict_cli_reports_bad_files_and_goes_on(run, clf, tmp_path, capsys):
  val = run["validation"]
  folder = tmp_path / "folder"
  folder.mkdir()
  for ex in val[2:4]:
    os.symlink(run["wavs"][ex.utt_id], folder / f"{ex.utt_id}.wav")
  bad = tmp_path / "corrupt.wav"
  bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
  inputs = [run["wavs"][val[0].utt_id], str(bad), str(folder), str(tmp_path / "missing.wav")]
  out = tmp_path / "pred.jsonl"
  assert cli.call(predict, ["--workdir", run["workdir"], "--format=jsonl", f"--output={out}", *inputs]) == 0
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [os.path.basename(r["file"]) for r in rows] == [
      f"{val[0].utt_id}.wav", "corrupt.wav", f"{val[2].utt_id}.wav", f"{val[3].utt_id}.wav", "missing.wav"]
  assert "unreadable audio" in rows[1]["error"] or "ffmpeg failed" in rows[1]["error"]
  assert "file not found" in rows[4]["error"]
  for r, ex in zip([rows[0], rows[2], rows[3]], [val[0], val[2], val[3]]):
    expect = clf.predict_log_mel(ex.log_mel)
    assert r["label"] == expect.label
    assert abs(r["probability"] - expect.probability) < 1e-5
  err = capsys.readouterr().err
  assert "3 classified, 2 failed" in err and "corrupt.wav" in err

  assert cli.call(predict, ["--workdir", run["workdir"], "--format=csv", str(bad)]) == 1
  captured = capsys.readouterr()
  assert "0 classified, 1 failed" in captured.err
  assert captured.out.splitlines()[0].startswith("file,label,probability,top3,p_low")


@pytest.mark.subprocess
def test_predict_cli_as_a_program(run):
  wav = run["wavs"][run["validation"][0].utt_id]
  proc = subprocess.run([sys.executable, "-m", "lanser_jax.serving.predict", f"--workdir={run['workdir']}",
                         wav, "/nonexistent.flac"], cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert lines[0].split()[:3] == ["file", "label", "probability"]
  assert lines[1].split()[0] == wav and lines[1].split()[1] in LABELS
  assert lines[2].split()[:2] == ["/nonexistent.flac", "FAILED"] and "file not found" in lines[2]
  assert "1 classified, 1 failed" in proc.stderr


def test_embed_cli_writes_rows_and_errors(run, clf, tmp_path, capsys):
  val = run["validation"]
  rows = [{"utt_id": "a", "audio": os.path.relpath(run["wavs"][val[0].utt_id], tmp_path)},
          {"utt_id": "b", "audio": run["wavs"][val[1].utt_id], "offset": 0.2, "duration": 0.5},
          {"utt_id": "gone", "audio": str(tmp_path / "gone.wav")},
          {"utt_id": "a", "audio": run["wavs"][val[2].utt_id]}]
  manifest = tmp_path / "manifest.jsonl"
  manifest.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n{not json\n"
                      + "\n".join(json.dumps(r) for r in rows[2:]) + "\n")
  out = tmp_path / "emb.npz"
  assert cli.call(embed, [f"--workdir={run['workdir']}", f"--manifest={manifest}", f"--output={out}"]) == 0
  with np.load(out) as z:
    assert z["utt_id"].tolist() == ["a", "b"]
    assert z["embedding"].shape == (2, 256) and z["probabilities"].shape == (2, 4)
    assert z["label_names"].tolist() == LABELS
    np.testing.assert_allclose(z["embedding"][0], clf.embed(run["wavs"][val[0].utt_id]), atol=1e-6)
    wave, _ = soundfile.read(run["wavs"][val[1].utt_id], dtype="float32")
    np.testing.assert_allclose(z["embedding"][1], clf.embed(wave[3200:11200], sample_rate=SR), atol=1e-6)
  errors = [json.loads(line) for line in open(str(out) + ".errors.jsonl")]
  assert [e["utt_id"] for e in errors] == ["line 3", "gone", "a"]
  assert "not a manifest row" in errors[0]["reason"] and "file not found" in errors[1]["reason"]
  assert "duplicate utt_id 'a'" in errors[2]["reason"]
  assert "2 embedded (dim 256), 3 failed" in capsys.readouterr().err

  assert cli.call(embed, [f"--workdir={run['workdir']}", f"--manifest={manifest}", f"--output={out}"]) == 0
  assert "exists: skipped" in capsys.readouterr().err
  jl = tmp_path / "emb.jsonl"
  assert cli.call(embed, [f"--workdir={run['workdir']}", f"--manifest={manifest}", f"--output={jl}"]) == 0
  first = json.loads(jl.read_text().splitlines()[0])
  assert first["utt_id"] == "a" and len(first["embedding"]) == 256 and first["label"] in LABELS


def test_embed_reads_the_csv_labelling_reads_and_keeps_label_speaker_split(run, tmp_path, capsys):
  """The CSV list of lanser-label (header, relative paths) embeds without a failure, each row's own label,
  speaker and split beside its embedding (npz and JSON lines); a list without an audio column is one line."""
  val = run["validation"]
  lst = tmp_path / "list.csv"
  lst.write_text("path,label,speaker,split\n" + "".join(
      f"{os.path.relpath(run['wavs'][ex.utt_id], tmp_path)},{LABELS[ex.label]},spk{i % 2},{'test' if i else ''}\n"
      for i, ex in enumerate(val[:3])))
  out = tmp_path / "emb.npz"
  assert cli.call(embed, [f"--workdir={run['workdir']}", f"--manifest={lst}", f"--output={out}"]) == 0
  assert "3 embedded (dim 256), 0 failed" in capsys.readouterr().err
  with np.load(out) as z:
    assert z["embedding"].shape == (3, 256)
    assert z["true_label"].tolist() == [LABELS[ex.label] for ex in val[:3]]
    assert z["speaker"].tolist() == ["spk0", "spk1", "spk0"] and z["split"].tolist() == ["", "test", "test"]
  jl = tmp_path / "emb.jsonl"
  assert cli.call(embed, [f"--workdir={run['workdir']}", f"--manifest={lst}", f"--output={jl}"]) == 0
  second = json.loads(jl.read_text().splitlines()[1])
  assert (second["true_label"], second["speaker"], second["split"]) == (LABELS[val[1].label], "spk1", "test")
  bad = tmp_path / "bad.csv"
  bad.write_text("file,emotion\nx.wav,angry\n")
  assert cli.call(embed, [f"--workdir={run['workdir']}", f"--manifest={bad}",
                          f"--output={tmp_path / 'bad.npz'}"]) == 1
  assert "no 'audio' (or 'path') column; the list has ['emotion', 'file']" in capsys.readouterr().err
