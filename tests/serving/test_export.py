"""Export: the ONNX model and the SavedModel of a tiny trained run of each backbone family (ResNet, Conformer,
spectrogram transformer) give `lanser_jax.load(...).predict`'s probabilities and `.embed`'s embedding within
1e-4, for clips shorter than one window to many windows long, under onnxruntime and TensorFlow in a process
that cannot import JAX or Flax; the docs page's onnxruntime-only example runs; a model with an op the converter
lacks is refused naming the model and the primitive, and an export that differs from predict is refused
before anything is written."""

import copy
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile

from helpers import tiny_config
from lanser_jax import train
from lanser_jax.serving import classifier, export

pytest.importorskip("jax2onnx", reason="ONNX export needs jax2onnx (launch/setup_venv.sh installs it --no-deps)")
pytest.importorskip("onnxruntime")
pytest.importorskip("tensorflow")

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(REPO, "docs", "serving_timeline_export.md")
BACKBONES = ["resnet", "conformer_tiny", "spectrogram_transformer_tiny"]

# Runs the exported models on the saved clips and writes their outputs; it must not import JAX or Flax.
RUNNER = r"""
import importlib.abc, sys


class NoJax(importlib.abc.MetaPathFinder):
  # As where JAX and Flax are not installed: TensorFlow imports jax whenever it can (tflite's util module).
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("jax", "jaxlib", "flax"):
      raise ModuleNotFoundError(f"No module named {name!r} (blocked: this process runs without JAX)")
    return None


sys.meta_path.insert(0, NoJax())
import numpy as np, onnxruntime, tensorflow as tf
folder, clips_path, out_path = sys.argv[1:]
clips = np.load(clips_path)
session = onnxruntime.InferenceSession(folder + "/model.onnx")
serve = tf.saved_model.load(folder + "/saved_model").signatures["serving_default"]
out = {}
for name in clips.files:
  p, e = session.run(None, {"waveform": clips[name]})
  out["onnx_p_" + name], out["onnx_e_" + name] = p, e
  o = serve(waveform=tf.constant(clips[name]))
  out["tf_p_" + name], out["tf_e_" + name] = o["probabilities"].numpy(), o["embedding"].numpy()
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "flax"))
assert not bad, bad
assert "jax" not in sys.modules and "flax" not in sys.modules
np.savez(out_path, **out)
"""


def _env():
  return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")


def _run_of(served_run, backbone, tmp_path_factory):
  """The workdir of a tiny run of `backbone`: the shared ResNet run, or a few steps of a transformer on its data."""
  if backbone == "resnet":
    return served_run["workdir"]
  workdir = str(tmp_path_factory.mktemp(backbone) / "run")
  train.train_and_evaluate(tiny_config(served_run["data_dir"], **{
      "model.name": backbone, "num_train_steps": 4, "eval_every_steps": 4, "checkpoint_every_steps": 4,
      "data.test_split": ""}), workdir)
  return workdir


@pytest.fixture(scope="module", params=BACKBONES)
def exported(request, served_run, tmp_path_factory):
  clf = classifier.load(_run_of(served_run, request.param, tmp_path_factory), batch_size=8)
  folder = str(tmp_path_factory.mktemp("exported") / request.param)
  written = export.export(clf, folder)
  assert sorted(written) == ["onnx", "saved_model"]
  return clf, folder


@pytest.fixture(scope="module")
def resnet_exported(served_run, tmp_path_factory):
  clf = classifier.load(served_run["workdir"], batch_size=8)
  folder = str(tmp_path_factory.mktemp("exported") / "resnet_example")
  export.export(clf, folder, ["onnx"])
  return clf, folder


def test_exports_equal_predict_without_jax(exported, tmp_path):
  clf, folder = exported
  rng = np.random.default_rng(0)
  # The tiny run's windows are 64 frames with a hop of 32 (a frame per 160 samples, plus one): 0.3 s is
  # shorter than one window, 10080 samples exactly one, 10240 one frame more (two windows), 15200 a window
  # and a hop; then many windows, the last one ending at the end of the clip.
  lengths = {"short": 4800, "exact_window": 10080, "one_more_frame": 10240, "window_and_hop": 15200,
             "two_s": 32000, "odd": 16000 * 5 + 117, "twelve_s": 16000 * 12}
  clips = {}
  for name, n in lengths.items():
    t = np.arange(n) / 16000
    clips[name] = (0.3 * np.sin(2 * np.pi * (250 + 400 * t) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
  np.savez(tmp_path / "clips.npz", **clips)
  proc = subprocess.run([sys.executable, "-c", RUNNER, folder, str(tmp_path / "clips.npz"), str(tmp_path / "out.npz")],
                        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = np.load(tmp_path / "out.npz")
  for name, x in clips.items():
    want_p = clf.predict(x, sample_rate=16000).probabilities
    want_e = clf.embed(x, sample_rate=16000)
    for runtime in ("onnx", "tf"):
      np.testing.assert_allclose(out[f"{runtime}_p_{name}"], want_p, atol=1e-4, rtol=0, err_msg=f"{runtime} {name}")
      np.testing.assert_allclose(out[f"{runtime}_e_{name}"], want_e, atol=1e-4, rtol=0, err_msg=f"{runtime} {name}")
  labels = json.load(open(os.path.join(folder, "labels.json")))
  assert labels["label_names"] == list(clf.label_names) and labels["sample_rate"] == 16000


def test_the_docs_onnxruntime_example_runs(resnet_exported, served_run, tmp_path):
  clf, folder = resnet_exported
  text = open(DOC).read()
  snippet = re.search(r"<!-- example: onnxruntime -->\n```python\n(.*?)```", text, re.S).group(1)
  assert "import jax" not in snippet and len(snippet.splitlines()) <= 12
  wav = served_run["wavs"][served_run["validation"][1].utt_id]
  stereo = str(tmp_path / "clip.wav")  # a stereo file: the snippet averages the channels as the decoder does
  x = soundfile.read(wav, dtype="float32")[0]
  soundfile.write(stereo, np.stack([x, x], 1), 16000, subtype="FLOAT")
  code = snippet.replace("exported/iemocap", folder).replace("clip.wav", stereo)
  code += "\nassert 'jax' not in sys.modules and 'flax' not in sys.modules\n"
  proc = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=_env(), capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  label, prob = proc.stdout.split()
  want = clf.predict(stereo)
  assert label == want.label and abs(float(prob) - want.probability) < 1e-4


class _WithCallback:
  """The served model with one op jax2onnx has no converter for (a host callback on the logits)."""

  def __init__(self, model):
    self.model = model

  def apply(self, variables, x, mask, train):
    logits, embedding = self.model.apply(variables, x, mask, train=train)
    same = jax.pure_callback(np.asarray, jax.ShapeDtypeStruct(logits.shape, logits.dtype), logits)
    return same, embedding


def test_a_model_that_does_not_convert_is_refused_naming_the_primitive(resnet_exported, tmp_path):
  clf, _ = resnet_exported
  bad = copy.copy(clf)
  bad.model = _WithCallback(clf.model)
  bad.config = clf.config.copy_and_resolve_references()
  bad.config.model.name = "resnet_with_callback"
  with pytest.raises(export.ExportError, match=r"model 'resnet_with_callback' does not convert to ONNX with "
                     r"jax2onnx: NotImplementedError: .*primitive 'pure_callback'"):
    export.export_onnx(bad, str(tmp_path / "c.onnx"))
  assert not os.path.exists(tmp_path / "c.onnx")


def test_an_export_that_differs_from_predict_is_refused_before_writing(resnet_exported, monkeypatch, tmp_path):
  """A graph that converts but does not compute what predict does (here: an embedding off by 1e-3) is caught by
  the export's own check on the probe waveforms, for both runtimes, and nothing is written."""
  clf, _ = resnet_exported
  graph = export.waveform_function

  def off(c):
    fn = graph(c)

    def shifted(wave):
      probabilities, embedding = fn(wave)
      return probabilities, embedding + 1e-3

    return shifted

  monkeypatch.setattr(export, "waveform_function", off)
  out = tmp_path / "out"
  model = re.escape(repr(clf.config.model.name))
  for fmt, runtime in (("onnx", r"ONNX \(onnxruntime\)"), ("saved_model", r"SavedModel \(TensorFlow\)")):
    with pytest.raises(export.ExportError, match=rf"model {model}: the {runtime} export's embedding is 0.001 away "
                       r"from lanser_jax.load\(...\).predict's \(tolerance 0.0001\) on a 0.\d\d-s probe waveform"):
      export.export(clf, str(out), [fmt])
  assert os.listdir(out) == []
