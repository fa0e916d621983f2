r"""How much weak labelling moves with the ASR compute type and with the CPU's kernels, on the demo corpus.

  python benchmarks/labelling_variation.py [--num=160] [--settings=int8,int8@avx2,float32,float32@avx2]
      [--repeat] [--out=DIR] [--smoke]

Runs the demo's labelling (lanser_jax/experiments/labeling/demo.py: Whisper tiny.en, beam 1, packing on,
the MiniLM sentence-encoder labeler, ekman7) over the demo's eSpeak pre-training corpus (seed 0, --num
utterances), once per setting, each in its own process and workdir:
  int8, float32      asr.compute_type on this CPU's own kernels;
  <type>@avx2        the same with oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2): the kernels an AVX2
                     CPU without AVX-512/VNNI runs (CTranslate2's CPU GEMMs go through oneDNN here), i.e.
                     what another machine computes, measured on this one.
--repeat runs the first setting a second time, into another workdir (the one-machine repeatability).
Per setting: corpus WER against the sentences spoken, the median per-utterance WER, outliers (more edits
than words), utterances weakly labelled, the label distribution and CPU time; per pair of settings: the
transcripts that differ, the weak labels that differ (among utterances labelled by both) and the
utterances labelled by only one. Writes DIR/labelling_variation.json. --smoke: 8 utterances, int8 and float32.
"""

import argparse
import collections
import glob
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.asr import corpus_wer, demo_set, utterance_figures  # noqa: E402

ISA_ENV = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}


def _parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--num", type=int, default=160, help="demo corpus utterances")
  p.add_argument("--settings", default="int8,int8@avx2,float32,float32@avx2")
  p.add_argument("--repeat", action="store_true", help="run the first setting twice")
  p.add_argument("--workdir", default="/tmp/lanser_bench_variation", help="corpus and stage workdirs")
  p.add_argument("--out", default="/tmp/lanser_bench_variation")
  p.add_argument("--smoke", action="store_true")
  return p.parse_args(argv)


def run_setting(name: str, manifest_dir: str, corpus_manifest: str, workdir: str) -> dict:
  """The asr and label stages of the demo config for one setting; returns its outputs and CPU seconds."""
  compute_type, _, isa = name.partition("@")
  env = dict(os.environ, **ISA_ENV.get(isa, {}))
  if isa and isa not in ISA_ENV:
    raise ValueError(f"--settings: {name!r}: unknown kernel set {isa!r} (known: {sorted(ISA_ENV)})")
  shutil.rmtree(workdir, ignore_errors=True)
  shutil.copytree(manifest_dir, os.path.join(workdir, "manifest"))
  config = (f"--config=lanser_jax/experiments/labeling/demo.py:corpus=pretrain,list={corpus_manifest},"
            "labeler=sentence_encoder")
  before, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
  for stage in ("asr", "label"):
    subprocess.run([sys.executable, "-m", "lanser_jax.stages.main", config, f"--config.asr.compute_type={compute_type}",
                    f"--stage={stage}", f"--workdir={workdir}"], check=True, cwd=REPO, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  texts = {t["utt_id"]: t["text"] for p in sorted(glob.glob(os.path.join(workdir, "asr", "transcripts-*.jsonl")))
           for t in map(json.loads, open(p))}
  labels = {x["utt_id"]: x["label"] for p in sorted(glob.glob(os.path.join(workdir, "labels", "labels-*.jsonl")))
            for x in map(json.loads, open(p))}
  asr_summary = json.load(open(os.path.join(workdir, "asr", "summary.json")))
  return {"texts": texts, "labels": labels, "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
          "wall_s": time.perf_counter() - wall, "asr_summary": asr_summary}


def compare(a: dict, b: dict) -> dict:
  both = sorted(set(a["labels"]) & set(b["labels"]))
  return {"transcripts_differ": sum(a["texts"][u] != b["texts"].get(u) for u in a["texts"]),
          "labels_differ": sum(a["labels"][u] != b["labels"][u] for u in both),
          "labelled_by_one_only": len(set(a["labels"]) ^ set(b["labels"])), "labelled_by_both": len(both)}


def main(argv=None):
  args = _parse(argv)
  if args.smoke:
    args.num, args.settings = 8, "int8,float32"
  settings = args.settings.split(",")
  if args.repeat:
    settings.append(settings[0] + "#2")
  os.makedirs(args.workdir, exist_ok=True)
  paths, refs = demo_set(args.workdir, args.num)
  corpus_manifest = os.path.join(args.workdir, f"demo_pretrain_{args.num}", "manifest.jsonl")
  base = os.path.join(args.workdir, "manifest_stage")
  shutil.rmtree(base, ignore_errors=True)
  subprocess.run([sys.executable, "-m", "lanser_jax.stages.main",
                  f"--config=lanser_jax/experiments/labeling/demo.py:corpus=pretrain,list={corpus_manifest}",
                  "--stage=manifest", f"--workdir={base}"], check=True, cwd=REPO, capture_output=True)
  rows = [json.loads(l) for l in open(os.path.join(base, "manifest", "manifest.jsonl"))]
  ref_of = {r["utt_id"]: r["text"] for r in rows}
  runs = {}
  for name in settings:
    runs[name] = run_setting(name.split("#")[0], os.path.join(base, "manifest"), corpus_manifest,
                             os.path.join(args.workdir, "runs", name.replace("@", "_").replace("#", "_")))
    r = runs[name]
    ids = sorted(r["texts"])
    hyps, rs = [r["texts"][u] for u in ids], [ref_of[u] for u in ids]
    r.update(wer=corpus_wer(rs, hyps), **utterance_figures(rs, hyps), labelled=len(r["labels"]),
             distribution=dict(sorted(collections.Counter(r["labels"].values()).items())))
    print(f"{name:14s} WER {100 * r['wer']:6.2f}%  median {100 * r['median_utterance_wer']:5.1f}%  outliers "
          f"{len(r['outliers'])}  labelled {r['labelled']}/{len(ids)}  cpu {r['cpu_s']:7.1f} s  "
          f"retried {r['asr_summary'].get('retried_repetitive', 0)}", flush=True)
  pairs = {f"{a} vs {b}": compare(runs[a], runs[b]) for a, b in itertools.combinations(settings, 2)}
  print(f"\n{'pair':34s} {'transcripts differ':>18s} {'labels differ':>14s} {'labelled by one':>16s}")
  for pair, c in pairs.items():
    print(f"{pair:34s} {c['transcripts_differ']:18d} {c['labels_differ']:10d}/{c['labelled_by_both']:<3d} "
          f"{c['labelled_by_one_only']:16d}")
  result = {"benchmark": "labelling_variation", "setup": dict(
      smoke=args.smoke, num=args.num, settings=settings, isa_env=ISA_ENV, load_average=os.getloadavg(),
      cpu_count=os.cpu_count(), provenance=runs[settings[0]]["asr_summary"].get("provenance")),
      "settings": {n: {k: v for k, v in r.items() if k not in ("texts", "labels", "asr_summary")}
                   | {"guard": {k: r["asr_summary"].get(k) for k in ("retried_repetitive", "still_repetitive")}}
                   for n, r in runs.items()},
      "pairs": pairs}
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "labelling_variation.json")
  with open(path, "w") as f:
    json.dump(result, f, indent=1)
  print(f"wrote {path} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
  main()
