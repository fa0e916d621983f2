r"""Export a trained run as models that run without JAX: a TensorFlow SavedModel (through jax2tf) and an
ONNX model (through jax2onnx), each from a 16 kHz mono waveform of any length to class probabilities and the
pooled embedding.

  lanser-export --workdir=workdirs/iemocap --output=exported/iemocap [--formats=onnx,saved_model] [--step=best]
  (or python -m lanser_jax.serving.export ...)

writes <output>/model.onnx, <output>/saved_model/ and <output>/labels.json (label names, sample rate, inputs and
outputs). The whole of `Classifier.predict` is inside the graph: the training's log-mel (its STFT as a
strided convolution whose kernel is the Hann window times the DFT, then the Slaney mel matrix and the log
floor), the rounding to the records' float16, the normalisation, the evaluation windows (`windows.window_starts`'s
starts, computed from the length inside the graph) and the averaging of the windows' logits and embeddings.
Parity with `lanser_jax.load(...).predict` is tested within 1e-4 for every backbone family
(tests/serving/test_export.py), and every export checks itself before it writes: the converted graph (under
onnxruntime, and the SavedModel's function under TensorFlow) classifies two probe waveforms, one shorter than
a window and one of several windows, and a difference from `predict` / `embed` above CHECK_TOLERANCE refuses
the export, naming the model, the output and the difference (a converter that translates an op wrongly, as
well as one that fails). What the graph does not do is the decoder's checks (empty, too short, silent, NaN):
a caller gives it a valid waveform.

jax2onnx is installed without its dependencies (`pip install --no-deps jax2onnx==0.17.1`, as
launch/setup_venv.sh does): its metadata pins an older orbax-checkpoint than the one training uses.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Sequence

from absl import app, flags
import numpy as np

from lanser_jax.utils import cli, fileio

FORMATS = ("onnx", "saved_model")
CHECK_TOLERANCE = 1e-4  # largest difference from predict / embed that an export may have on the probe clips

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_WORKDIR = flags.DEFINE_string("workdir", None, "The training workdir (or a checkpoint step folder).",
                               flag_values=FLAGS)
_STEP = flags.DEFINE_string("step", None, "best (default; else latest), latest, or a step number.",
                            flag_values=FLAGS)
_OUTPUT = flags.DEFINE_string("output", None, "Folder to write model.onnx, saved_model/ and labels.json.",
                              flag_values=FLAGS)
_FORMATS = flags.DEFINE_list("formats", list(FORMATS), f"Any of {', '.join(FORMATS)}.", flag_values=FLAGS)
flags.mark_flags_as_required(["workdir", "output"], flag_values=FLAGS)


class ExportError(RuntimeError):
  """A run that cannot be exported, with the reason and what to do."""


def stft_kernel(log_mel) -> np.ndarray:
  """[n_fft, 1, 1, 2 * bins] HWIO kernel: the Hann window times the DFT's cosines and sines, so a convolution
  with stride hop over the zero-padded waveform gives the real and imaginary parts of every frame's rfft."""
  n_fft = log_mel.options.fft_length
  n = np.arange(n_fft)[:, None]
  k = np.arange(n_fft // 2 + 1)[None, :]
  angle = 2 * np.pi * n * k / n_fft
  window = log_mel.window.astype(np.float64)[:, None]
  kernel = np.concatenate([window * np.cos(angle), -window * np.sin(angle)], axis=1)
  return kernel[:, None, None, :].astype(np.float32)


def waveform_function(clf) -> Callable[[Any], tuple[Any, Any]]:
  """waveform [samples] float32 at clf.sample_rate -> (probabilities [classes], embedding [dim]), in JAX,
  shape-polymorphic in the number of samples (the function that both exports convert)."""
  import jax
  import jax.numpy as jnp
  from jax import lax

  clf.require_audio_front_end()
  if clf.hop_frames > clf.crop_frames:
    raise ExportError(f"config.data.eval_hop_frames {clf.hop_frames} > crop_frames {clf.crop_frames}: the "
                      "graph's windows assume the hop is at most a window")
  lm = clf.log_mel_transform
  n_fft, hop, bins = lm.options.fft_length, lm.options.hop_length, lm.options.num_mel_bins
  half = n_fft // 2 + 1
  kernel, mel_t = stft_kernel(lm), lm.mel_t.astype(np.float32)
  floor = np.float32(lm.options.log_floor)
  mean, std = (np.asarray(a, np.float32) for a in (clf.normalizer.mean, clf.normalizer.std))
  window, win_hop = clf.crop_frames, clf.hop_frames
  feature_dtype = clf._feature_dtype
  variables = jax.device_get(clf._variables)
  model = clf.model

  def forward(wave):
    x = jnp.pad(wave.astype(jnp.float32), (n_fft // 2, n_fft // 2))[None, :, None, None]
    spec = lax.conv_general_dilated(x, kernel, (hop, 1), "VALID",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=lax.Precision.HIGHEST)[0, :, 0, :]
    power = jnp.square(spec[:, :half]) + jnp.square(spec[:, half:])
    mel = jnp.log(jnp.maximum(jnp.matmul(power, mel_t, precision=lax.Precision.HIGHEST), floor))
    mel = mel.astype(feature_dtype).astype(jnp.float32)  # the records' float16, as the model saw in training
    frames = jnp.asarray(mel.shape[0], jnp.int32)
    padded = jnp.concatenate([mel, jnp.zeros((window, bins), jnp.float32)], 0)
    # windows.window_starts as arithmetic on the frame count: starts min(i * hop, frames - window) (0 for a
    # clip shorter than a window) for i = 0..last; ceil(frames / hop) rows are at least last + 1 when
    # hop <= window, and the one or two past `last` are computed with weight 0.
    i = jnp.cumsum(jnp.ones_like(mel[::win_hop, 0], dtype=jnp.int32)) - 1
    last = (jnp.maximum(frames - window, 0) + win_hop - 1) // win_hop
    starts = jnp.maximum(jnp.minimum(i * win_hop, frames - window), 0)
    weight = (i <= last).astype(jnp.float32)
    crops = jnp.take(padded, starts[:, None] + jnp.arange(window, dtype=jnp.int32)[None, :], axis=0)
    length = jnp.minimum(frames - starts, window)
    mask = jnp.arange(window, dtype=jnp.int32)[None, :] < length[:, None]
    normed = jnp.where(mask[:, :, None], (crops - mean) / std, 0.0)  # pipeline.Normalizer.device
    logits, embedding = model.apply(variables, normed, mask, train=False)
    total = jnp.sum(weight)
    logits = jnp.sum(logits.astype(jnp.float32) * weight[:, None], 0) / total
    embedding = jnp.sum(embedding.astype(jnp.float32) * weight[:, None], 0) / total
    return jax.nn.softmax(logits), embedding

  return forward


def export_onnx(clf, path: str) -> str:
  """Writes the ONNX model (opset 23; input `waveform` [samples], outputs `probabilities`, `embedding`)."""
  try:
    from jax2onnx import to_onnx
  except ImportError as e:
    raise ExportError("ONNX export needs jax2onnx: pip install --no-deps jax2onnx==0.17.1 and pip install "
                      "'lanser-jax[export]' (its own dependencies pin an older orbax-checkpoint)") from e
  fn = waveform_function(clf)
  # jax2onnx logs a traceback for each of its example plugins whose optional package (equinox, dm-pix) is
  # missing; none of them is used here.
  plugin_log = logging.getLogger("jax2onnx.plugins.plugin_system")
  level = plugin_log.level
  plugin_log.setLevel(logging.ERROR)
  try:
    proto = to_onnx(fn, inputs=[("samples",)], model_name=f"lanser_{clf.config.model.name}",
                    input_names=["waveform"], output_names=["probabilities", "embedding"])
  except Exception as e:
    raise ExportError(f"model {clf.config.model.name!r} does not convert to ONNX with jax2onnx: "
                      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (export --formats="
                      "saved_model still works where jax2tf converts it)") from e
  finally:
    plugin_log.setLevel(level)
  # jax2onnx annotates intermediate shapes that onnxruntime cannot merge once the length is dynamic (e.g.
  # layouts around transposed convolutions); without them onnxruntime infers every shape itself.
  del proto.graph.value_info[:]
  for key, value in _metadata(clf).items():
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, json.dumps(value)
  data = proto.SerializeToString()
  try:
    import onnxruntime
  except ImportError:
    cli.log(f"warning: {path} not checked against predict: onnxruntime is not installed "
            "(pip install 'lanser-jax[export]')")
  else:
    try:
      session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as e:
      raise ExportError(f"model {clf.config.model.name!r}: onnxruntime cannot load the ONNX model jax2onnx "
                        f"wrote: {str(e).splitlines()[0]} (export --formats=saved_model instead)") from e
    check(clf, "ONNX (onnxruntime)", lambda x: session.run(None, {"waveform": x}))
  with fileio.atomic_write(path, "wb") as f:
    f.write(data)
  return path


def export_saved_model(clf, path: str) -> str:
  """Writes the SavedModel; its `serving_default` signature maps `waveform` [samples] to
  {"probabilities", "embedding"}."""
  try:
    import tensorflow as tf
  except ImportError as e:
    raise ExportError("SavedModel export needs TensorFlow: pip install 'lanser-jax[export]'") from e
  from jax.experimental import jax2tf
  fn = waveform_function(clf)

  def outputs(wave):
    probs, emb = fn(wave)
    return {"probabilities": probs, "embedding": emb}

  try:
    converted = jax2tf.convert(outputs, polymorphic_shapes=["(samples,)"], with_gradient=False)
    module = tf.Module()
    module.serve = tf.function(converted, autograph=False,
                               input_signature=[tf.TensorSpec([None], tf.float32, name="waveform")])
    module.serve.get_concrete_function()
  except Exception as e:
    raise ExportError(f"model {clf.config.model.name!r} does not convert with jax2tf: {type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}") from e

  def run_tf(x):
    out = module.serve(tf.constant(x))
    return out["probabilities"].numpy(), out["embedding"].numpy()

  check(clf, "SavedModel (TensorFlow)", run_tf)
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
  return path


def probe_clips(clf) -> list[np.ndarray]:
  """The waveforms an export is checked on: a chirp in noise shorter than one window, and one of several
  windows whose last window overlaps the one before it (the windows' arithmetic, not just the model)."""
  hop = clf.log_mel_transform.options.hop_length
  window = clf.crop_frames * hop
  rng = np.random.default_rng(0)
  clips = []
  for n in (max(window // 2, clf.sample_rate // 2), 3 * window + window // 2 + 117):
    t = np.arange(n) / clf.sample_rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(n)
    clips.append(x.astype(np.float32))
  return clips


def check(clf, runtime: str, run_exported: Callable[[np.ndarray], Sequence[Any]]) -> None:
  """ExportError unless the exported graph's (probabilities, embedding) equal clf.predict's and clf.embed's
  within CHECK_TOLERANCE on every probe clip."""
  for x in probe_clips(clf):
    want = {"probabilities": clf.predict(x, sample_rate=clf.sample_rate).probabilities,
            "embedding": clf.embed(x, sample_rate=clf.sample_rate)}
    got = dict(zip(("probabilities", "embedding"), run_exported(x)))
    for name, value in want.items():
      value = np.asarray(value, np.float32)
      out = np.asarray(got[name], np.float32)
      diff = float(np.max(np.abs(out - value))) if out.shape == value.shape else float("inf")
      if not diff <= CHECK_TOLERANCE:  # a NaN fails too
        shape = "" if out.shape == value.shape else f" (shape {out.shape}, expected {value.shape})"
        raise ExportError(
            f"model {clf.config.model.name!r}: the {runtime} export's {name} is {diff:.3g} away from "
            f"lanser_jax.load(...).predict's (tolerance {CHECK_TOLERANCE:g}){shape} on a "
            f"{len(x) / clf.sample_rate:.2f}-s probe waveform: the converter translated an op of this model "
            "wrongly; nothing was written")


def _metadata(clf) -> dict[str, Any]:
  return {"label_names": list(clf.label_names), "sample_rate": clf.sample_rate,
          "model": clf.config.model.name, "step": clf.step,
          "inputs": {"waveform": "float32 [samples], mono, at sample_rate"},
          "outputs": {"probabilities": "float32 [classes], softmax of the window-averaged logits",
                      "embedding": "float32 [dim], window-averaged pooled embedding"}}


def export(clf, output: str, formats: Sequence[str] = FORMATS) -> dict[str, str]:
  """Writes the asked formats and labels.json under `output`; {format: path}."""
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown:
    raise ExportError(f"formats {unknown}: expected some of {list(FORMATS)}")
  fileio.makedirs(output)
  written = {}
  if "onnx" in formats:
    written["onnx"] = export_onnx(clf, os.path.join(output, "model.onnx"))
  if "saved_model" in formats:
    written["saved_model"] = export_saved_model(clf, os.path.join(output, "saved_model"))
  fileio.write_json(os.path.join(output, "labels.json"), _metadata(clf))
  return written


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  from lanser_jax.serving import classifier
  classifier.quiet_orbax()
  clf = classifier.load(_WORKDIR.value, _STEP.value)
  cli.log(f"model {clf.config.model.name} step {clf.step} from {clf.state_path}")
  try:
    written = export(clf, _OUTPUT.value, _FORMATS.value)
  except ExportError as e:
    cli.log(f"error: {e}")
    return 1
  for fmt, path in written.items():
    cli.log(f"{fmt}: {path}")
  return 0


def run():
  """The `lanser-export` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
