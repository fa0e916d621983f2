r"""Serving speed of one model three ways, side by side: JAX (`lanser_jax.load(...).predict` on a waveform), the
exported TensorFlow SavedModel, and the exported ONNX model under ONNX Runtime.

  python benchmarks/serving.py [--models=resnet18:0.25,resnet50:1] [--seconds=3,10] [--utterances=10] \
      [--out=/tmp/lanser_bench_serving.json]

(needs the export extra and jax2onnx, as launch/setup_venv.sh installs them.) Each model is built with
random weights (speed does not depend on their values) and the base configuration's front end: 64 mel bins,
300-frame windows with a 150-frame hop; resnet18:0.25 is the demo's backbone, resnet50:1 the paper's. Every
runtime classifies the same utterances one at a time (batch 1, as a service answers requests), after one
warm-up call per utterance length (the SavedModel compiles per length). Prints per model, runtime and length:
utterances per second and milliseconds of latency per second of audio (median over utterances); writes JSON.
`export_s` is lanser-export's time for both formats, its check of each against predict on two probe
waveforms included.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default="resnet18:0.25,resnet50:1")
  p.add_argument("--seconds", default="3,10")
  p.add_argument("--utterances", type=int, default=10)
  p.add_argument("--out", default="/tmp/lanser_bench_serving.json")
  return p.parse_args()


def build_classifier(name: str, width: float):
  """A Classifier of a randomly initialised model with the base configuration's front end."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from lanser_jax import config_lib, models
  from lanser_jax.audio import log_mel as log_mel_lib
  from lanser_jax.input_pipeline import pipeline
  from lanser_jax.serving import classifier
  config = config_lib.base_config()
  config.model.name, config.model.width = name, width
  labels = ["neutral", "happy", "sad", "angry"]
  model = models.model_from_config(config, len(labels))
  options = log_mel_lib.LogMelOptions()
  variables = model.init(jax.random.key(0), jnp.zeros((1, config.data.crop_frames, options.num_mel_bins)))
  normalizer = pipeline.Normalizer(np.full(options.num_mel_bins, -6.0, np.float32),
                                   np.full(options.num_mel_bins, 3.0, np.float32))
  return classifier.Classifier(model, {"params": variables["params"],
                                       "batch_stats": variables.get("batch_stats", {})},
                               config=config, label_names=labels, normalizer=normalizer,
                               feature=options.to_json(), batch_size=8)


def timed(fn, clips):
  """Median seconds of fn(clip) over clips (each called once)."""
  import numpy as np
  times = []
  for x in clips:
    t = time.perf_counter()
    fn(x)
    times.append(time.perf_counter() - t)
  return float(np.median(times)), float(np.sum(times))


def main():
  args = _parse()
  import numpy as np
  import onnxruntime
  import tensorflow as tf
  from lanser_jax.serving import export
  rng = np.random.default_rng(0)
  lengths = [float(s) for s in args.seconds.split(",")]
  rows = []
  for spec in args.models.split(","):
    name, width = spec.split(":")
    clf = build_classifier(name, float(width))
    folder = tempfile.mkdtemp(prefix="lanser_bench_serving_")
    t = time.perf_counter()
    export.export(clf, folder)
    export_s = time.perf_counter() - t
    session = onnxruntime.InferenceSession(os.path.join(folder, "model.onnx"))
    serve = tf.saved_model.load(os.path.join(folder, "saved_model")).signatures["serving_default"]
    runtimes = {
        "jax": lambda x: clf.predict(x, sample_rate=16000).probabilities,
        "saved_model": lambda x: serve(waveform=tf.constant(x))["probabilities"].numpy(),
        "onnxruntime": lambda x: session.run(None, {"waveform": x})[0],
    }
    for seconds in lengths:
      clips = [(0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
               for _ in range(args.utterances)]
      for runtime, fn in runtimes.items():
        fn(clips[0])  # warm-up: compiles for this length
        median, total = timed(fn, clips)
        row = {"model": spec, "runtime": runtime, "seconds": seconds, "utterances": len(clips),
               "utterances_per_s": len(clips) / total, "ms_per_audio_s": 1000 * median / seconds,
               "export_s": export_s}
        rows.append(row)
        print(f"{spec:15s} {runtime:12s} {seconds:5.1f} s  {row['utterances_per_s']:8.2f} utt/s  "
              f"{row['ms_per_audio_s']:8.2f} ms per audio s", flush=True)
  result = {"rows": rows, "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
            "onnxruntime": onnxruntime.__version__, "tensorflow": tf.__version__}
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  print(f"-> {args.out}")


if __name__ == "__main__":
  main()
