r"""Peak memory of the emotion timeline and of whole-file prediction on long recordings: bounded, whatever the
length.

  python benchmarks/timeline_memory.py [--minutes=6,60] [--workdir=RUN] [--out=/tmp/lanser_bench_timeline.json]

Writes a recording of each length (block by block, never held whole): the LibriVox read-speech clips of
pocketsphinx-testdata, each after 1.5 s of faint noise, repeated. Then, each in a fresh process so that the
peak resident set size (ru_maxrss) is that task's alone: `Classifier.timeline(path)` (Silero VAD segments,
each classified) and `Classifier.predict(path)` (the whole file streamed through the evaluation windows).
The model is --workdir's, else the demo's backbone (ResNet-18 at width 0.25) with random weights. Prints
minutes, task, wall seconds, segments and peak RSS in MiB; writes JSON.
"""

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--minutes", default="6,60")
  p.add_argument("--workdir", default="")
  p.add_argument("--out", default="/tmp/lanser_bench_timeline.json")
  p.add_argument("--child", default="", help=argparse.SUPPRESS)  # "timeline|predict:PATH"
  return p.parse_args()


def write_recording(path: str, minutes: float):
  """LibriVox clips after 1.5 s of faint noise each, repeated to `minutes`, written block by block."""
  import numpy as np
  import soundfile
  clips = [soundfile.read(f, dtype="float32")[0] for f in sorted(glob.glob(os.path.join(LIBRIVOX, "*.wav")))]
  if not clips:
    sys.exit(f"no LibriVox clips in {LIBRIVOX}: apt-get install pocketsphinx-testdata")
  rng = np.random.default_rng(0)
  total, written = int(minutes * 60 * 16000), 0
  with soundfile.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as f:
    while written < total:
      for c in clips:
        for part in ((3e-4 * rng.standard_normal(24000)).astype(np.float32), c):
          part = part[:total - written]
          f.write(part)
          written += len(part)


def child(args):
  task, path = args.child.split(":", 1)
  if args.workdir:
    from lanser_jax.serving import classifier
    clf = classifier.load(args.workdir)
  else:
    sys.path.insert(0, HERE)
    from serving import build_classifier
    clf = build_classifier("resnet18", 0.25)
  t = time.perf_counter()
  if task == "timeline":
    segments = len(clf.timeline(path))
  else:
    clf.predict(path)
    segments = 1
  print(json.dumps({"wall_s": time.perf_counter() - t, "segments": segments,
                    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main():
  args = _parse()
  if args.child:
    return child(args)
  import tempfile
  rows = []
  folder = tempfile.mkdtemp(prefix="lanser_bench_timeline_")
  for minutes in [float(m) for m in args.minutes.split(",")]:
    path = os.path.join(folder, f"{minutes:g}min.wav")
    write_recording(path, minutes)
    for task in ("timeline", "predict"):
      cmd = [sys.executable, __file__, f"--child={task}:{path}"] + ([f"--workdir={args.workdir}"] if args.workdir else [])
      proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
      if proc.returncode:
        sys.exit(proc.stderr[-3000:])
      row = {"minutes": minutes, "task": task, **json.loads(proc.stdout.strip().splitlines()[-1])}
      rows.append(row)
      print(f"{minutes:6.1f} min  {task:8s}  {row['wall_s']:8.1f} s  {row['segments']:6d} segments  "
            f"peak RSS {row['peak_rss_mib']:8.1f} MiB", flush=True)
    os.remove(path)
  with open(args.out, "w") as f:
    json.dump({"rows": rows, "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}, f, indent=1)
  print(f"-> {args.out}")


if __name__ == "__main__":
  main()
