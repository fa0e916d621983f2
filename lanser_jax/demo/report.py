"""The demo's report: Markdown and PNG figures from the files the stages left in the workdir."""

from __future__ import annotations

import collections
import json
import os
import re
from typing import Any

import numpy as np

from input_pipeline import records, subsets
from lanser_jax.demo import baselines as demo_baselines
from lanser_jax import fileio


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
  from lanser_jax import metrics
  info = records.read_dataset_info(features_dir)
  train = subsets.split_labels(features_dir, "train")
  test = subsets.split_labels(features_dir, test_split)
  majority = int(np.bincount(train).argmax())
  n = len(info["label_names"])
  result = metrics.from_confusion(metrics.confusion_matrix(test, np.full_like(test, majority), n),
                                  info["label_names"])
  result["majority_class"] = info["label_names"][majority]
  return result


def _plot_label_efficiency(rows, majority, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
  for ax, metric in zip(axes, ("ua", "wa")):
    for init, style in (("pretrained", "o-"), ("scratch", "s--")):
      pts = sorted((r["fraction"], r[metric]) for r in rows if r["init"] == init)
      if pts:
        ax.plot([p[0] * 100 for p in pts], [p[1] * 100 for p in pts], style, label=init)
    ax.axhline(majority[metric] * 100, color="gray", ls=":", label="majority class")
    ax.set_xlabel("% of training labels")
    ax.set_ylabel(f"test {metric.upper()} (%)")
    ax.set_xscale("log")
    ax.set_xticks([r["fraction"] * 100 for r in rows])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.grid(alpha=0.3)
  axes[0].legend()
  fig.suptitle("Label efficiency: pre-trained on weak labels vs from scratch")
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, format="png", dpi=110)
  plt.close(fig)


def _plot_confusion(result, title, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  cm = np.asarray(result["confusion_matrix"], float)
  norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
  names = result["label_names"]
  fig, ax = plt.subplots(figsize=(5, 4.4))
  ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
  for i in range(len(names)):
    for j in range(len(names)):
      ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
  ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
  ax.set_yticks(range(len(names)), names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title)
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, format="png", dpi=110)
  plt.close(fig)


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


def write_report(work: str, stage_records: dict[str, dict[str, Any]], weak: dict[str, Any]) -> str:
  out_dir = os.path.join(work, "report")
  fileio.makedirs(out_dir)
  asr = asr_and_weak_label_summary(work)
  lab_features = os.path.join(work, "labels_labelled", "features")
  majority = majority_baseline(lab_features)
  info = records.read_dataset_info(lab_features)

  rows = []
  for name, rec in stage_records.items():
    m = re.match(r"6_finetune_(pretrained|scratch)_([\d.]+)$", name)
    if not m:
      continue
    res = fileio.read_json(os.path.join(rec["workdir"], "results.json"))
    rows.append({"init": m[1], "fraction": float(m[2]), "ua": res["test"]["ua"], "wa": res["test"]["wa"],
                 "val_ua": res["validation"]["ua"], "test": res["test"], "workdir": rec["workdir"]})
  rows.sort(key=lambda r: (r["fraction"], r["init"]))
  _plot_label_efficiency(rows, majority, os.path.join(out_dir, "label_efficiency.png"))
  best = max(rows, key=lambda r: r["val_ua"])  # chosen on validation, reported on test
  _plot_confusion(best["test"], f"{best['init']}, {int(best['fraction'] * 100)}% labels (test)",
                  os.path.join(out_dir, "confusion_matrix.png"))
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
      "Everything here was computed on this machine from speech the project synthesised with eSpeak NG "
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
  lines += [
      "## 3. Label efficiency on the labelled corpus (6 CREMA-D emotions, speaker-independent test)", "",
      f"Training split: {train_n} utterances; test: {info['splits']['test']['num_examples']}. "
      "Each cell is one run (seed 0) evaluated on whole test utterances.", "",
      "| labels | pre-trained UA | scratch UA | pre-trained WA | scratch WA |", "|---|---|---|---|---|",
  ]
  for fraction in sorted({r["fraction"] for r in rows}):
    cell = {r["init"]: r for r in rows if r["fraction"] == fraction}
    get = lambda init, k: _pct(cell[init][k]) if init in cell else "–"
    lines.append(f"| {int(fraction * 100)}% | {get('pretrained', 'ua')} | {get('scratch', 'ua')} | "
                 f"{get('pretrained', 'wa')} | {get('scratch', 'wa')} |")
  lines += [f"| majority class ({majority['majority_class']}) | {_pct(majority['ua'])} | | "
            f"{_pct(majority['wa'])} | |", *baseline_lines(work), "",
            "![label efficiency](label_efficiency.png)", "",
            f"## 4. Best model (by validation UA): {best['init']}, {int(best['fraction'] * 100)}% of labels", "",
            f"Test UA {_pct(best['ua'])}%, WA {_pct(best['wa'])}%, macro-F1 {_pct(best['test']['macro_f1'])}%.",
            "", "![confusion matrix](confusion_matrix.png)", "",
            "## 5. Wall time per stage", "", "| stage | seconds |", "|---|---|",
            *[f"| {name} | {rec['wall_s']:.0f} |" for name, rec in stage_records.items()],
            f"| **total** | **{sum(r['wall_s'] for r in stage_records.values()):.0f}** |", "",
            "Stages finished in an earlier run are reused, and show that run's time.", ""]
  path = os.path.join(out_dir, "report.md")
  fileio.write_text(path, "\n".join(lines))
  with fileio.atomic_write(os.path.join(out_dir, "report.json")) as f:
    json.dump({"asr_and_weak_labels": asr, "majority": {k: majority[k] for k in ("ua", "wa", "majority_class")},
               "label_efficiency": [{k: r[k] for k in ("init", "fraction", "ua", "wa", "val_ua")} for r in rows],
               "best": {k: best[k] for k in ("init", "fraction", "ua", "wa")},
               "baselines": {kind: {rule: {k: r[k] for k in ("ua", "wa", "macro_f1", "num_without_prediction")}
                                    for rule, r in res["by_argmax"].items()}
                             for kind, res in demo_baselines.read_results(work).items()},
               "wall_s": {k: v["wall_s"] for k, v in stage_records.items()}}, f, indent=1)
  return path
