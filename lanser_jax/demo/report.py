"""The demo's report: Markdown and PNG figures from the files the stages left in the workdir.

What any run or sweep gets (the label-efficiency table with intervals and paired tests, the figure, the best
setting's per-class recall, confusion matrix and curves) comes from lanser_jax/tools/report.py; this module
adds what is the demo's own: the eSpeak corpus, the ASR and weak-label summary, the baselines, the prosody
analysis and the backbone table."""

from __future__ import annotations

import collections
import json
import math
import os
import re
from typing import Any

import numpy as np

from lanser_jax.input_pipeline import records, subsets
from lanser_jax.demo import baselines as demo_baselines
from lanser_jax.demo import representations
from lanser_jax.tools import report as report_lib
from lanser_jax.tools import stats
from lanser_jax.utils import fileio


def _jsonl(pattern: str) -> list[dict[str, Any]]:
  rows = []
  for path in fileio.glob(pattern):
    rows.extend(fileio.read_jsonl(path))
  return rows


def _words(text: str) -> list[str]:
  return re.sub(r"[^a-z0-9' ]+", " ", (text or "").lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
  """Word-level Levenshtein distance (substitutions, insertions, deletions)."""
  prev = list(range(len(hyp) + 1))
  for i, r in enumerate(ref, 1):
    cur = [i] + [0] * len(hyp)
    for j, h in enumerate(hyp, 1):
      cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
    prev = cur
  return prev[-1]


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
  errors = sum(edit_distance(_words(r), _words(h)) for r, h in zip(refs, hyps))
  return errors / max(1, sum(len(_words(r)) for r in refs))


def asr_and_weak_label_summary(work: str) -> dict[str, Any]:
  manifest = {r["utt_id"]: r for r in _jsonl(os.path.join(work, "corpus", "pretrain", "manifest.jsonl"))}
  transcripts = _jsonl(os.path.join(work, "labels_pretrain", "asr", "transcripts-*.jsonl"))
  scored = [t for t in transcripts if t["utt_id"] in manifest]
  wer = word_error_rate([manifest[t["utt_id"]]["text"] for t in scored], [t["text"] for t in scored])
  labels = _jsonl(os.path.join(work, "labels_pretrain", "labels", "labels-*.jsonl"))
  # The weak labels use the ekman7 taxonomy, whose words are the corpus's emotion names.
  text_agree = [l["label"] == manifest[l["utt_id"]].get("text_emotion") for l in labels]
  prosody_agree = [l["label"] == manifest[l["utt_id"]].get("prosody_emotion") for l in labels]
  per_emotion = collections.defaultdict(lambda: [0, 0])
  for l in labels:
    e = manifest[l["utt_id"]].get("text_emotion")
    per_emotion[e][0] += l["label"] == e
    per_emotion[e][1] += 1
  return {
      "num_utterances": len(manifest), "num_transcribed": len(transcripts), "wer": wer,
      "num_weak_labels": len(labels),
      "weak_label_counts": dict(collections.Counter(l["label"] for l in labels).most_common()),
      "agreement_with_text_emotion": float(np.mean(text_agree)) if labels else 0.0,
      "agreement_with_prosody_emotion": float(np.mean(prosody_agree)) if labels else 0.0,
      "agreement_per_text_emotion": {k: v[0] / v[1] for k, v in sorted(per_emotion.items()) if v[1]},
  }


def majority_baseline(features_dir: str, test_split: str = "test") -> dict[str, Any]:
  """Predict the most frequent training class everywhere: UA = 1 / classes present, WA = its test share."""
  from lanser_jax.engine import metrics
  info = records.read_dataset_info(features_dir)
  train = subsets.split_labels(features_dir, "train")
  test = subsets.split_labels(features_dir, test_split)
  majority = int(np.bincount(train).argmax())
  n = len(info["label_names"])
  result = metrics.from_confusion(metrics.confusion_matrix(test, np.full_like(test, majority), n),
                                  info["label_names"])
  result["majority_class"] = info["label_names"][majority]
  return result


def _pct(x: float) -> str:
  return f"{100 * x:.1f}"


BASELINE_ROWS = {"zero_shot": "zero-shot (pre-trained, ekman7 prediction mapped, no fine-tuning)",
                 "text_only": "text only (labeler on the reference transcript)"}


def baseline_lines(work: str) -> list[str]:
  """Table rows of the zero-shot and text-only baselines (lanser_jax/demo/baselines.py), when they ran:
  the restricted argmax's UA/WA, the argmax over all labels in brackets."""
  lines = []
  for kind, res in demo_baselines.read_results(work).items():
    r, a = res["by_argmax"]["restricted"], res["by_argmax"]["all"]
    lines.append(f"| {BASELINE_ROWS[kind]} | {_pct(r['ua'])} ({_pct(a['ua'])}) | | "
                 f"{_pct(r['wa'])} ({_pct(a['wa'])}) | |")
  if lines:
    lines += ["", "Zero-shot and text only take the argmax over the labels that map to one of the six "
              "classes; in brackets, the argmax over all seven ekman7 labels, where 'surprise' counts as "
              "wrong. Text only reads the sentence each test utterance speaks (no ASR on the labelled "
              "corpus); those sentences are neutral by design, so text alone cannot tell the emotions apart."]
  return lines


# Row names of the analysis table: the audio measures (lanser_jax/tools/analysis.py) and the planted settings.
MEASURE_NAMES = {
    "f0_mean_hz": "F0 mean (Hz, pyin)", "f0_range_hz": "F0 range, 5-95% (Hz, pyin)",
    "energy_db": "energy (dB)", "speaking_rate": "speaking rate (syllable nuclei/s, estimated)",
    "words_per_second": "words per second (text / duration)",
    "prosody.rate": "planted: rate (words/min)", "prosody.pitch": "planted: pitch (0-100)",
    "prosody.pitch_range": "planted: pitch range (0-100)", "prosody.volume": "planted: volume (0-200)",
    "prosody.word_gap": "planted: word gap (x10 ms)"}
# (audio measure, the planted setting it should follow): how well the measures read the ground truth.
MEASURE_VS_PLANTED = (("f0_mean_hz", "prosody.pitch"), ("f0_range_hz", "prosody.pitch_range"),
                      ("energy_db", "prosody.volume"), ("speaking_rate", "prosody.rate"),
                      ("words_per_second", "prosody.rate"))
RUN_NOTES = {"pretrain": "the weak-label pre-training alone (never saw a labelled utterance)",
             "pretrained": "fine-tuned from it", "scratch": "trained from scratch"}


def _r2(p: dict[str, Any] | None) -> str:
  return "–" if not p or p.get("r2") is None else f"{p['r2']:.2f}"


def analysis_lines(work: str, out_dir: str) -> tuple[list[str], dict[str, Any]]:
  """The representation-analysis section (lanser_jax/demo/representations.py) and its summary, when the
  step ran: the R² table, how the audio measures track the planted settings, and the figures (copied)."""
  result = representations.read_result(work)
  if not result:
    return [], {}
  runs = list(result["probes"])
  measures = list(result["probes"][runs[0]])
  for name in representations.FIGURES:
    src = os.path.join(work, "analysis", name)
    if fileio.exists(src):
      fileio.copy(src, os.path.join(out_dir, f"analysis_{name}"))
  notes = []
  for run in runs:
    kind = run.split("_")[0]
    pct = f" at {int(float(run.split('_')[1]) * 100)}% of the labels" if "_" in run else ""
    notes.append(f"`{run}`: {RUN_NOTES.get(kind, run)}{pct}")
  lines = [
      "## 5. What the representations learn (probes with ground truth)", "",
      f"Ridge probes (held-out R², {100 * result['test_fraction']:.0f}% of utterances held out, seed "
      f"{result['seed']}) from each run's frozen, window-averaged embeddings to prosodic measures of the audio "
      "and to the eSpeak NG settings each utterance was synthesised with (its emotion's profile plus jitter, "
      "`lanser_jax/demo/PROSODY.md`), on the labelled corpus's "
      f"{result['num_utterances']} test-voice utterances, which no run trained on. Runs: {'; '.join(notes)}.",
      "", "| measure | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
  for m in measures:
    lines.append(f"| {MEASURE_NAMES.get(m, m)} | " + " | ".join(_r2(result["probes"][r][m]) for r in runs) + " |")
  planted = [m for m in measures if m.startswith(f"{representations.KNOWN}.")]
  summary = {"num_utterances": result["num_utterances"],
             "r2": {r: {m: result["probes"][r][m]["r2"] for m in measures} for r in runs}}
  if planted:
    means = {r: float(np.mean([result["probes"][r][m]["r2"] for m in planted
                               if result["probes"][r][m]["r2"] is not None] or [np.nan])) for r in runs}
    summary["mean_r2_planted"] = means
    lines += ["", "Mean R² over the planted settings: " + ", ".join(f"{r} {v:.2f}" for r, v in means.items())
              + "."]
  prosody_rows = _jsonl(os.path.join(work, "analysis", "prosody.jsonl"))
  pairs = []
  for measure, setting in MEASURE_VS_PLANTED:
    xy = np.asarray([(r.get(measure), r.get(setting)) for r in prosody_rows], dtype=float)
    xy = xy[np.isfinite(xy).all(1)] if len(xy) else xy
    if len(xy) > 2 and xy.std(0).min() > 0:
      pairs.append((measure, setting, float(np.corrcoef(xy.T)[0, 1])))
  if pairs:
    summary["measure_vs_planted_r"] = {f"{m}~{s}": r for m, s, r in pairs}
    lines += ["", "Do the audio measures read the planted settings? Pearson r over the same utterances (the "
              "voices add their own base pitch, so pitch is only partly the setting):", "",
              "| audio measure | planted setting | r |", "|---|---|---:|",
              *[f"| {MEASURE_NAMES[m]} | {MEASURE_NAMES[s].split(': ')[1]} | {r:.2f} |" for m, s, r in pairs]]
  lines += ["", "![probes](analysis_probes.png)", "",
            "PCA and t-SNE of the embeddings (one row per run), coloured by emotion and by voice:", "",
            "![pca](analysis_pca.png)", "", "![t-SNE](analysis_tsne.png)", ""]
  return lines, summary


# The backbone of the main runs (steps 5 and 6): the demo's ResNet-18 at width 0.25, as end_to_end.BACKBONES
# names it; the --backbones steps are 9_<backbone>_pretrain and 9_<backbone>_finetune_<init>_<fraction>.
MAIN_BACKBONE = "resnet18_w0.25"
_FINETUNE_STEP = re.compile(r"(?:6|9_(?P<b>[a-z0-9_.]+?))_finetune_(?P<init>pretrained|scratch)_(?P<f>[\d.]+)"
                            r"(?:_seed(?P<seed>\d+))?$")
_PRETRAIN_STEP = re.compile(r"(?:5|9_(?P<b>[a-z0-9_.]+?))_pretrain$")


def backbone_rows(stage_records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per backbone that ran: its size, weak-label pre-training and test UA per fraction and init
  (the demo's ResNet from the main runs, the others from the --backbones steps)."""
  found: dict[str, dict[str, Any]] = {}
  for name, rec in stage_records.items():
    m = _FINETUNE_STEP.match(name)
    p = _PRETRAIN_STEP.match(name)
    if not (m or p) or (m and m["seed"] not in (None, "0")):  # the table compares seed 0's runs
      continue
    backbone = (m or p)["b"] or MAIN_BACKBONE
    row = found.setdefault(backbone, {"backbone": backbone, "ua": {}})
    results_path = os.path.join(rec["workdir"], "results.json")
    if not fileio.exists(results_path):
      continue
    res = fileio.read_json(results_path)
    if p:
      row["pretrain_val_ua"] = res.get("validation", {}).get("ua")
      continue
    row["ua"][f"{m['init']}_{float(m['f'])}"] = res["test"]["ua"]
    row.setdefault("model", rec.get("model"))
    row.setdefault("num_params", rec.get("num_params"))
  return sorted(found.values(), key=lambda r: (r["backbone"] != MAIN_BACKBONE, r["backbone"]))


def backbone_lines(rows: list[dict[str, Any]]) -> list[str]:
  lines = ["## 6. Backbones: pre-trained vs scratch", ""]
  if not any(r["backbone"] != MAIN_BACKBONE for r in rows):
    return lines + [f"Only {MAIN_BACKBONE} ran (section 3). `--backbones={MAIN_BACKBONE},conformer_tiny,"
                    "spectrogram_transformer_tiny` adds the tiny Conformer and spectrogram transformer here, "
                    "pre-trained vs scratch at 10% and 100% of the labels.", ""]
  head = [f"{int(f * 100)}% {init}" for f in (0.1, 1.0) for init in ("pre-trained", "scratch")]
  sizes = {r["backbone"]: r.get("num_params") for r in rows}
  smaller = ", ".join(f"{sizes[MAIN_BACKBONE] / n:.0f}x" for b, n in sizes.items() if b != MAIN_BACKBONE and n) \
      if sizes.get(MAIN_BACKBONE) else ""
  lines += ["Each backbone pre-trained on the same weak labels and fine-tuned (or trained from scratch) on the "
            "same subsets, with the same steps and crops (seed 0, one run each: section 3 shows how far one "
            "seed's figures move); only the model and its optimiser recipe differ "
            f"(`lanser_jax/experiments/demo_pretrain.py`, `backbone=`). {MAIN_BACKBONE} is the demo's narrow "
            "ResNet-18 (width 0.25) standing in for the paper's ResNet-50; the others run at the project's tiny sizes"
            f"{f' ({smaller} smaller than it)' if smaller else ''}, "
            "so this checks that every backbone runs the whole pipeline, not which backbone is better. Test UA (%):",
            "", "| backbone (parameters) | weak-label pre-training, validation UA | " + " | ".join(head)
            + " |", "|---|" + "---:|" * (1 + len(head))]
  for r in rows:
    size = f"{r['num_params']:,}" if r.get("num_params") else ""
    cells = [_pct(r["ua"][k]) if k in r["ua"] else "–"
             for k in (f"{init}_{f}" for f in (0.1, 1.0) for init in ("pretrained", "scratch"))]
    pre = _pct(r["pretrain_val_ua"]) if r.get("pretrain_val_ua") is not None else "–"
    lines.append(f"| {r['backbone']}{f' ({size})' if size else ''} | {pre} | " + " | ".join(cells) + " |")
  return lines + [""]


def _run_order(step: str) -> tuple:
  """Steps grouped by number and backbone, each backbone's pre-training before its fine-tunings."""
  backbone = (_FINETUNE_STEP.match(step) or _PRETRAIN_STEP.match(step) or {"b": None})["b"] or ""
  return (step.split("_")[0], backbone, not step.endswith("_pretrain"), step)


INIT_NAMES = {"weak_labels": "pre-trained", "none": "scratch"}  # the features sweep's `pretrained` axis


def significance_lines(comparisons: list[dict[str, Any]]) -> list[str]:
  """In words, per fraction: which of pre-trained and scratch is better, and whether that is significant."""
  lines = []
  for c in sorted(comparisons, key=lambda c: float(c.get("fraction", 0))):
    if c["result"] is None:
      continue
    lines.append(f"- {int(float(c['fraction']) * 100)}% of the labels: "
                 + stats.describe(c["result"], "pre-trained", "scratch"))
  return lines


def write_report(work: str, stage_records: dict[str, dict[str, Any]], weak: dict[str, Any],
                 cells: list[dict[str, Any]] | None = None) -> str:
  """<work>/report/report.md, its figures and report.json. `cells`: the fine-tuning cells under
  <work>/finetune (default: its sweep.json)."""
  out_dir = os.path.join(work, "report")
  fileio.makedirs(out_dir)
  asr = asr_and_weak_label_summary(work)
  lab_features = os.path.join(work, "labels_labelled", "features")
  majority = majority_baseline(lab_features)
  info = records.read_dataset_info(lab_features)
  finetune_root = os.path.join(work, "finetune")
  cells = cells if cells is not None else report_lib.read_sweep_record(finetune_root)
  seeds = sorted({c["axes"]["seed"] for c in cells})

  analysis, analysis_summary = analysis_lines(work, out_dir)
  backbones = backbone_rows(stage_records)
  efficiency, best_section, agg = report_lib.sweep_lines(
      finetune_root, cells, out_dir, "test", "pretrained=none",
      reference={f"majority class ({majority['majority_class']})": majority["ua"]},
      best_heading="## 4. Best setting", heading="###")
  best = agg["best"]
  pretrain_results = {}
  pre_path = os.path.join(work, "pretrain", "results.json")
  if fileio.exists(pre_path):
    pretrain_results = fileio.read_json(pre_path)

  train_n = info["splits"]["train"]["num_examples"]
  chain_path = os.path.join(work, "labels_pretrain", "summary.json")
  chain = fileio.read_json(chain_path) if fileio.exists(chain_path) else {}
  reasons = collections.Counter()
  for stage in chain.get("stages", {}).values():
    reasons.update(stage.get("reasons", {}))
  rejected = ", ".join(f"{k}: {v}" for k, v in reasons.most_common()) or "none"
  lines = [
      "# LanSER demo report", "",
      "Everything here was computed from speech the project synthesised with eSpeak NG "
      "(see `lanser_jax/demo/PROSODY.md`); it shows the pipeline working end to end, not the paper's numbers. "
      "Both corpora use the same 12 eSpeak voices: only voice identity, never a label, is shared between "
      "pre-training and the labelled test voices.",
      "",
      "## 1. ASR (Whisper tiny.en) on the pre-training corpus", "",
      f"- utterances: {asr['num_utterances']}, transcribed: {asr['num_transcribed']}",
      f"- word error rate against the sentences that were spoken: **{_pct(asr['wer'])}%**", "",
      "## 2. Weak labels", "",
      f"- labeler: {weak.get('labeler_note', weak.get('labeler', '?'))}",
      f"- utterances in {chain.get('in', '?')} = weakly labelled and written {chain.get('written', '?')} + "
      f"rejected {chain.get('rejected', '?')} ({rejected}); each rejection is listed with its reason in "
      "`labels_pretrain/errors.jsonl`",
      f"- agreement of the weak label with the emotion the sentence's words were written for: "
      f"**{_pct(asr['agreement_with_text_emotion'])}%** (chance ≈ 14% for 7 classes)",
      f"- agreement with the emotion of the prosody actually spoken: {_pct(asr['agreement_with_prosody_emotion'])}%"
      " (the prosody follows the text 80% of the time by design)", "",
      "| weak label | utterances |", "|---|---|",
      *[f"| {k} | {v} |" for k, v in asr["weak_label_counts"].items()], "",
      "| intended (text) emotion | weak label agrees |", "|---|---|",
      *[f"| {k} | {_pct(v)}% |" for k, v in asr["agreement_per_text_emotion"].items()], "",
  ]
  if pretrain_results.get("validation"):
    v = pretrain_results["validation"]
    lines += [f"Pre-training on the weak labels: held-out voices, weak-label UA {_pct(v['ua'])}%, "
              f"WA {_pct(v['wa'])}% (step {pretrain_results.get('best_step')}).", ""]
  words = significance_lines(agg["comparisons"])
  lines += [
      "## 3. Label efficiency on the labelled corpus (6 CREMA-D emotions, speaker-independent test)", "",
      f"Training split: {train_n} utterances; test: {info['splits']['test']['num_examples']}. Every setting "
      f"ran with {len(seeds)} seeds ({', '.join(map(str, seeds))}: the training seed and the label subset), "
      "evaluated on whole test utterances; `pretrained=weak_labels` is fine-tuned from the weak-label "
      "pre-training, `pretrained=none` trained from scratch, with the same recipe "
      "(`lanser_jax/experiments/demo_finetune.py`). These are the cells of "
      "`lanser_jax/experiments/sweeps/features.py`; `lanser-report <workdir>/finetune` writes this section "
      "alone.", "", *efficiency]
  if all(math.isnan(r.get("ua_spk_ci_lo", math.nan)) for r in agg["rows"]):
    lines += ["No interval over test speakers: the test split has fewer than "
              f"{stats.MIN_SPEAKERS} voices (the demo's has 2). The utterance intervals and the paired comparisons "
              "therefore treat utterances of one voice as independent, and are optimistic (docs/results.md).", ""]
  if words:
    lines += ["Pre-trained vs scratch, in words (significant = the 95% interval of the paired difference "
              "excludes 0; docs/results.md says how it is computed):", "", *words, ""]
  lines += ["Baselines on the same test split (one deterministic run each):", "",
            "| baseline | UA | | WA | |", "|---|---|---|---|---|",
            f"| majority class ({majority['majority_class']}) | {_pct(majority['ua'])} | | "
            f"{_pct(majority['wa'])} | |", *baseline_lines(work), "",
            *best_section, *analysis, *backbone_lines(backbones),
            "## 7. Wall time per stage", "", "| stage | seconds |", "|---|---|",
            *[f"| {n} | {stage_records[n]['wall_s']:.0f} |" for n in sorted(stage_records, key=_run_order)],
            f"| **total** | **{sum(r['wall_s'] for r in stage_records.values()):.0f}** |", "",
            "Stages finished in an earlier run are reused, and show that run's time.", ""]
  path = os.path.join(out_dir, "report.md")
  fileio.write_text(path, "\n".join(lines))
  rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in agg["rows"]]
  with fileio.atomic_write(os.path.join(out_dir, "report.json")) as f:
    json.dump({"asr_and_weak_labels": asr, "majority": {k: majority[k] for k in ("ua", "wa", "majority_class")},
               "label_efficiency": rows, "comparisons": agg["comparisons"],
               "best": {"setting": best["label"], "validation_ua": best["validation_ua"]} if best else None,
               "baselines": {kind: {rule: {k: r[k] for k in ("ua", "wa", "macro_f1", "num_without_prediction")}
                                    for rule, r in res["by_argmax"].items()}
                             for kind, res in demo_baselines.read_results(work).items()},
               "analysis": analysis_summary, "backbones": backbones,
               "wall_s": {k: v["wall_s"] for k, v in stage_records.items()}}, f, indent=1)
  return path
