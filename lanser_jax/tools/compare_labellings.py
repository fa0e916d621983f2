r"""Two labellings of one corpus side by side: how far the transcripts and the weak labels differ.

  lanser-compare-labellings --workdir_a=/data/lanser/iemocap_ref --workdir_b=/data/lanser/iemocap \
      [--manifest=M] [--out=compare.json]
  (or python -m lanser_jax.tools.compare_labellings ...)

The usual pair is the same corpus labelled from its own transcripts (label.text_source=manifest) and from
Whisper's (text_source=asr), so that the effect of ASR errors on the weak labels is one number. Reports
  * WER of each workdir's labelled text against the manifest's `text` (the reference; default manifest:
    <workdir_a>/manifest/manifest.jsonl), over the utterances that have one -- 0 for a manifest-text run;
    and, where a workdir has asr/ transcripts, the WER of all of them (rejected ones included);
  * agreement of the two weak label sets on the utterances both labelled: the fraction of equal argmax
    labels, Cohen's kappa, the mean total-variation distance of the score vectors, per-label agreement,
    and the utterances only one side labelled.
Both workdirs must use the same taxonomy (labels/label_names.json).
"""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

from absl import app, flags
import numpy as np

from lanser_jax.corpora import manifests
from lanser_jax.input_pipeline import records
from lanser_jax.utils import cli, fileio


def words(text: str) -> list[str]:
  """Lower-case words without punctuation: WER counts word errors, not casing or commas."""
  return re.sub(r"[^\w\s']", " ", text.lower()).split()


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
  d = list(range(len(hyp) + 1))
  for i, r in enumerate(ref, 1):
    prev, d[0] = d.copy(), i
    for j, h in enumerate(hyp, 1):
      d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
  return d[-1]


def word_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float | None:
  """Corpus WER: word edits summed over utterances / reference words (None without reference words)."""
  total = sum(len(words(r)) for r in refs)
  if not total:
    return None
  return sum(edit_distance(words(r), words(h)) for r, h in zip(refs, hyps)) / total


def read_labels(workdir: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
  labels_dir = os.path.join(workdir, "labels")
  names_path = os.path.join(labels_dir, "label_names.json")
  if not fileio.exists(names_path):
    raise FileNotFoundError(f"{names_path}: missing; run --stage=label on {workdir} first")
  paths = sorted(fileio.glob(os.path.join(labels_dir, "labels-*-of-*.jsonl")))
  if not paths:
    raise FileNotFoundError(f"{labels_dir}: no labels-*.jsonl pieces")
  rows = {}
  for path in paths:
    for row in fileio.read_jsonl(path):
      rows[row["utt_id"]] = row
  return records.read_json(names_path), rows


def read_asr(workdir: str) -> dict[str, str]:
  out = {}
  for path in sorted(fileio.glob(os.path.join(workdir, "asr", "transcripts-*-of-*.jsonl"))):
    for row in fileio.read_jsonl(path):
      out[row["utt_id"]] = row.get("text") or ""
  return out


def text_source(workdir: str) -> str:
  """The label.text_source a workdir was labelled with (from the config the stage wrote), or 'unknown'."""
  for name in ("config.label.json", "config.all.json"):
    path = os.path.join(workdir, name)
    if fileio.exists(path):
      return records.read_json(path).get("label", {}).get("text_source", "asr")
  return "unknown"


def cohen_kappa(a: np.ndarray, b: np.ndarray, num_classes: int) -> float | None:
  if not len(a):
    return None
  observed = float(np.mean(a == b))
  pa, pb = np.bincount(a, minlength=num_classes) / len(a), np.bincount(b, minlength=num_classes) / len(b)
  expected = float(pa @ pb)
  return 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)


def compare(workdir_a: str, workdir_b: str, manifest: str | None = None) -> dict[str, Any]:
  names_a, a = read_labels(workdir_a)
  names_b, b = read_labels(workdir_b)
  if names_a != names_b:
    raise ValueError(f"{workdir_a} and {workdir_b} use different taxonomies: {names_a[:5]}... vs {names_b[:5]}...")
  manifest = manifest or os.path.join(workdir_a, "manifest", "manifest.jsonl")
  reference = {row.utt_id: row.text for row in manifests.read_manifest(manifest, resolve=False, lenient=True)
               if isinstance(row, manifests.Row) and isinstance(row.text, str) and row.text.strip()}
  result: dict[str, Any] = {"manifest": fileio.absolute(manifest), "label_names": names_a,
                            "with_reference_text": len(reference), "workdirs": {}}
  for key, workdir, rows in (("a", workdir_a, a), ("b", workdir_b, b)):
    with_ref = [u for u in rows if u in reference]
    entry = {"workdir": fileio.absolute(workdir), "text_source": text_source(workdir), "labelled": len(rows),
             "labelled_text_wer": word_error_rate([reference[u] for u in with_ref],
                                                  [rows[u]["text"] for u in with_ref]),
             "labelled_text_wer_utterances": len(with_ref)}
    asr_texts = read_asr(workdir)
    asr_ref = [u for u in asr_texts if u in reference]
    if asr_ref:
      entry["asr_wer"] = word_error_rate([reference[u] for u in asr_ref], [asr_texts[u] for u in asr_ref])
      entry["asr_wer_utterances"] = len(asr_ref)
    result["workdirs"][key] = entry
  common = sorted(set(a) & set(b))
  ia = np.asarray([a[u]["label_index"] for u in common], np.int64)
  ib = np.asarray([b[u]["label_index"] for u in common], np.int64)
  sa = np.asarray([a[u]["scores"] for u in common], np.float64).reshape(len(common), len(names_a))
  sb = np.asarray([b[u]["scores"] for u in common], np.float64).reshape(len(common), len(names_a))
  per_label = {}
  for k, name in enumerate(names_a):
    mask = ia == k
    if mask.any():
      per_label[name] = {"count_a": int(mask.sum()), "agreement": float(np.mean(ib[mask] == k))}
  confusion = np.zeros((len(names_a), len(names_a)), np.int64)
  np.add.at(confusion, (ia, ib), 1)
  result["agreement"] = {
      "both_labelled": len(common), "only_a": len(set(a) - set(b)), "only_b": len(set(b) - set(a)),
      "label_agreement": float(np.mean(ia == ib)) if common else None,
      "cohen_kappa": cohen_kappa(ia, ib, len(names_a)),
      "mean_total_variation": float(0.5 * np.abs(sa - sb).sum(axis=1).mean()) if common else None,
      "same_text": int(sum(a[u]["text"] == b[u]["text"] for u in common)),
      "per_label_of_a": per_label, "confusion_a_by_b": confusion.tolist()}
  return result


def report(result: dict[str, Any]) -> str:
  lines = ["| workdir | text source | labelled | WER of labelled text | ASR WER |", "|---|---|---:|---:|---:|"]
  fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
  for key, w in result["workdirs"].items():
    lines.append(f"| {key}: {w['workdir']} | {w['text_source']} | {w['labelled']} | "
                 f"{fmt(w['labelled_text_wer'])} | {fmt(w.get('asr_wer'))} |")
  g = result["agreement"]
  lines += ["", f"both labelled {g['both_labelled']} (only a {g['only_a']}, only b {g['only_b']}); same label "
            f"{fmt(g['label_agreement'])}, Cohen's kappa {fmt(g['cohen_kappa'])}, mean total variation of the "
            f"scores {fmt(g['mean_total_variation'])}; identical text {g['same_text']}"]
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Command line.

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_WORKDIR_A = flags.DEFINE_string("workdir_a", None, "The first labelling workdir (usually text_source=manifest).",
                                 flag_values=FLAGS)
_WORKDIR_B = flags.DEFINE_string("workdir_b", None, "The second labelling workdir (usually text_source=asr).",
                                 flag_values=FLAGS)
_MANIFEST = flags.DEFINE_string("manifest", None, "Reference texts (default: workdir_a's manifest).",
                                flag_values=FLAGS)
_OUT = flags.DEFINE_string("out", None, "JSON file (default: <workdir_b>/compare.json).", flag_values=FLAGS)
flags.mark_flags_as_required(["workdir_a", "workdir_b"], flag_values=FLAGS)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  result = compare(_WORKDIR_A.value, _WORKDIR_B.value, _MANIFEST.value)
  out = _OUT.value or os.path.join(_WORKDIR_B.value, "compare.json")
  records.write_json(out, result)
  print(report(result))
  print(f"wrote {out}")
  return 0


def run():
  """The `lanser-compare-labellings` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
