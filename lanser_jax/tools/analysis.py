r"""What the representations learn: embedding maps and linear probes to prosody, run beside run.

  lanser-analysis --workdir=pretrained=RUN_A --workdir=scratch=RUN_B --manifest=M \
      [--split=held_out|all|SPLIT] [--out=DIR] [--limit=2000] [--seed=0] [--test_fraction=0.3] [--known=prosody]
  (or python -m lanser_jax.tools.analysis ...)

Each --workdir is a training run (NAME=PATH, or PATH named by its folder); every run embeds the same
utterances of the manifest or CSV list (lanser_jax.load(run).embed: window-averaged pooled embeddings, the run's
own front end). Which utterances (--split): held_out (default) leaves out every utterance that any of the runs
trained on or selected its checkpoint on (the train and eval splits of the feature folder in its config.json),
so a fine-tuned run is never probed on its own training data; all keeps every row; a split name (e.g. test)
keeps the rows in that split of the runs' feature folders. Writes to --out (default <first run>/analysis):
  pca.png, tsne.png   2-D maps of each run's embeddings (rows), coloured by label and by speaker (columns);
  probes.png          held-out R^2 of each prosodic measure, runs side by side;
  analysis.md/.json   the probe table, and per utterance the measures (prosody.jsonl).
Prosodic measures, from the audio at 16 kHz (librosa):
  f0_mean_hz, f0_range_hz   mean and 5-95 percentile range of the voiced F0 from librosa.pyin (65-600 Hz,
                            quarter-semitone bins);
  energy_db                 mean frame RMS in dB (25 ms frames, 10 ms hop) over frames within 40 dB of the peak;
  speaking_rate             syllable nuclei per second, estimated as in de Jong & Wempe (2009), simplified:
                            peaks of the smoothed RMS envelope (dB) that stand >= 2 dB above the dips on
                            both sides, lie within 25 dB of the loudest frame, fall in a voiced frame, and
                            are >= 100 ms apart; divided by the clip's duration. An estimate, not a count.
  words_per_second          (only where every row has `text`) words of the text / duration.
Known values (--known=KEY): where each manifest row holds a dict of numbers under KEY (the demo corpora's
`prosody`: the eSpeak NG settings each utterance was synthesised with), each number is probed too, as
`KEY.name`, so a probe can be checked against ground truth; a row without it is left out of that probe.
Probes: ridge regression (scikit-learn RidgeCV, alpha chosen by leave-one-out on the training part) from
standardised frozen embeddings to each standardised measure, cross-validated over round(1/--test_fraction)
folds: by speaker where every row names one (a speaker's utterances never on both sides of a probe), else by
utterance (seeded). The table gives each probe's mean held-out R^2 ± the sample std over the folds (the
spread), the JSON every fold's value. Utterances whose audio fails or has no voiced frame
are listed in the JSON (`skipped`) and left out of the F0 probes only where F0 is undefined.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from absl import app, flags
import numpy as np

from lanser_jax.corpora import manifests
from lanser_jax.input_pipeline import records
from lanser_jax.audio import decode
from lanser_jax.utils import cli, fileio

SAMPLE_RATE = 16000
FRAME, HOP = 400, 160  # 25 ms, 10 ms at 16 kHz
MEASURES = ("f0_mean_hz", "f0_range_hz", "energy_db", "speaking_rate")


# ---------------------------------------------------------------------------------------------------
# Prosody.


def speaking_rate(samples: np.ndarray, voiced: np.ndarray | None = None, sr: int = SAMPLE_RATE) -> float:
  """Syllable nuclei per second: prominent peaks of the smoothed RMS envelope (see the module docstring)."""
  import librosa
  import scipy.signal

  rms = librosa.feature.rms(y=samples, frame_length=FRAME, hop_length=HOP, center=True)[0]
  db = 20 * np.log10(np.maximum(rms, 1e-10))
  db = np.convolve(db, np.ones(5) / 5, mode="same")  # 50 ms smoothing: one peak per syllable
  peaks, _ = scipy.signal.find_peaks(db, prominence=2.0, height=db.max() - 25.0, distance=10)
  if voiced is not None and len(voiced):
    n = min(len(voiced), len(db))
    peaks = peaks[peaks < n]
    peaks = peaks[voiced[peaks]]
  return float(len(peaks) / (len(samples) / sr))


def prosody(samples: np.ndarray, sr: int = SAMPLE_RATE) -> dict[str, float]:
  """The measures of one mono clip; F0 values are NaN when pyin finds no voiced frame."""
  import librosa

  # Quarter-semitone pitch bins (default 0.1): 5x faster, F0 within 0.7%, far below speakers' variation.
  f0, voiced, _ = librosa.pyin(samples, fmin=65.0, fmax=600.0, sr=sr, frame_length=1024, hop_length=HOP,
                               resolution=0.25)
  f0v = f0[voiced & np.isfinite(f0)]
  rms = librosa.feature.rms(y=samples, frame_length=FRAME, hop_length=HOP, center=True)[0]
  db = 20 * np.log10(np.maximum(rms, 1e-10))
  loud = db[db >= db.max() - 40.0]
  return {"f0_mean_hz": float(f0v.mean()) if len(f0v) else float("nan"),
          "f0_range_hz": float(np.percentile(f0v, 95) - np.percentile(f0v, 5)) if len(f0v) else float("nan"),
          "energy_db": float(loud.mean()),
          "speaking_rate": speaking_rate(samples, voiced, sr),
          "voiced_fraction": float(np.mean(voiced)) if len(voiced) else 0.0}


# ---------------------------------------------------------------------------------------------------
# Probes and maps.


def probe_folds(n: int, groups: Sequence[str] | None, k: int, seed: int) -> tuple[list[np.ndarray], str]:
  """Test indices of each of `k` probe folds, and how they were cut: by speaker when `groups` names at least two
  (all of a speaker's utterances in one fold; speakers dealt to folds in a seeded order, largest first), else by
  utterance (a seeded permutation cut in k parts)."""
  rng = np.random.default_rng(seed)
  names = sorted(set(groups)) if groups is not None else []
  if groups is not None and len(names) >= 2 and "" not in names:
    k = min(k, len(names))
    sizes = {g: 0 for g in names}
    for g in groups:
      sizes[g] += 1
    order = sorted(names, key=lambda g: (-sizes[g], rng.random()))
    load, fold_of = np.zeros(k), {}
    for g in order:  # the fold with the fewest utterances so far: folds of similar size
      f = int(np.argmin(load))
      fold_of[g] = f
      load[f] += sizes[g]
    idx = np.asarray([fold_of[g] for g in groups])
    return [np.flatnonzero(idx == f) for f in range(k)], "speaker"
  order = rng.permutation(n)
  return [np.sort(part) for part in np.array_split(order, max(2, min(k, n)))], "utterance"


def probe_r2(x: np.ndarray, y: np.ndarray, seed: int = 0, test_fraction: float = 0.3,
             groups: Sequence[str] | None = None) -> dict[str, Any]:
  """Held-out R^2 of a ridge probe from x [n, d] to y [n], cross-validated over round(1/test_fraction) folds
  (by speaker when `groups` gives each row's speaker, see probe_folds): r2 is the mean over folds, r2_std their
  sample standard deviation, r2_folds each fold's value. Rows with a non-finite y are left out; a fold with
  fewer than 2 test or 3 training rows is skipped (r2 None when every fold is)."""
  from sklearn.linear_model import RidgeCV
  from sklearn.metrics import r2_score
  from sklearn.preprocessing import StandardScaler

  keep = np.isfinite(y)
  x, y = np.asarray(x, np.float64)[keep], np.asarray(y, np.float64)[keep]
  groups = None if groups is None else [g for g, k in zip(groups, keep) if k]
  k = max(2, int(round(1.0 / test_fraction)))
  folds, split_by = probe_folds(len(y), groups, k, seed)
  scores, alphas, n_test = [], [], 0
  for test in folds:
    train = np.setdiff1d(np.arange(len(y)), test)
    if len(test) < 2 or len(train) < 3:
      continue
    sx = StandardScaler().fit(x[train])
    mean, std = y[train].mean(), y[train].std() or 1.0
    model = RidgeCV(alphas=np.logspace(-3, 4, 15)).fit(sx.transform(x[train]), (y[train] - mean) / std)
    pred = model.predict(sx.transform(x[test])) * std + mean
    scores.append(float(r2_score(y[test], pred)))
    alphas.append(float(model.alpha_))
    n_test += len(test)
  return {"r2": float(np.mean(scores)) if scores else None,
          "r2_std": float(np.std(scores, ddof=1)) if len(scores) > 1 else (0.0 if scores else None),
          "r2_folds": scores, "folds": len(scores), "split_by": split_by, "n_test": n_test,
          "n_train": len(y) - n_test // max(1, len(scores)), "alpha": float(np.median(alphas)) if alphas else None}


def maps(embeddings: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
  """2-D PCA and t-SNE coordinates (t-SNE perplexity capped for small sets)."""
  import threadpoolctl
  from sklearn.decomposition import PCA
  from sklearn.manifold import TSNE

  x = np.asarray(embeddings, np.float64)
  x = (x - x.mean(0)) / (x.std(0) + 1e-8)
  perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
  # One OpenMP thread: Barnes-Hut t-SNE synchronises its threads at each of its ~1,000 iterations, and on a
  # busy 2-core machine each barrier waits for a descheduled thread (measured under load 8: 144 points took
  # 81 s on 2 threads, 5.3 s on 1; 12 points 22.6 s and 1.0 s). The same coordinates either way.
  with threadpoolctl.threadpool_limits(1, user_api="openmp"):
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
  return {"pca": PCA(n_components=2, random_state=seed).fit_transform(x), "tsne": tsne}


def plot_maps(coords: dict[str, dict[str, np.ndarray]], labels: Sequence[str], speakers: Sequence[str],
              method: str, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  runs = list(coords)
  fig, axs = plt.subplots(len(runs), 2, figsize=(10, 4.2 * len(runs)), squeeze=False)
  for row, run in zip(axs, runs):
    xy = coords[run][method]
    for ax, (what, values) in zip(row, (("label", labels), ("speaker", speakers))):
      names = sorted(set(values))
      cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
      for i, name in enumerate(names):
        mask = np.asarray([v == name for v in values])
        ax.scatter(xy[mask, 0], xy[mask, 1], s=10, color=cmap(i % cmap.N), label=name)
      ax.set_title(f"{run}: {method.upper()} by {what}")
      if len(names) <= 12:
        ax.legend(fontsize=7, markerscale=1.5)
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, format="png", dpi=100)
  plt.close(fig)


def plot_probes(table: dict[str, dict[str, Any]], path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  runs = list(table)
  measures = list(next(iter(table.values())))
  fig, ax = plt.subplots(figsize=(1.6 * len(measures) + 2, 4))
  width = 0.8 / len(runs)
  for i, run in enumerate(runs):
    r2 = [table[run][m]["r2"] if table[run][m]["r2"] is not None else 0.0 for m in measures]
    ax.bar(np.arange(len(measures)) + i * width, r2, width, label=run)
  ax.set_xticks(np.arange(len(measures)) + 0.4 - width / 2, measures, fontsize=8)
  ax.set_ylabel("held-out R² (ridge probe)")
  ax.axhline(0, color="k", lw=0.5)
  ax.legend()
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, format="png", dpi=100)
  plt.close(fig)


# ---------------------------------------------------------------------------------------------------
# The command.


def parse_workdir(value: str) -> tuple[str, str]:
  name, sep, path = value.partition("=")
  if not sep:
    path = value
    name = os.path.basename(os.path.normpath(value))
  return name, path


def read_clips(manifest: str, limit: int = 0, excluded: dict[str, str] | None = None,
               only: set[str] | None = None) -> tuple[list[manifests.Row], list[np.ndarray], list[dict]]:
  """Rows and audio of the manifest (or CSV list), leaving out the rows in `excluded` (utt_id -> why) and,
  when `only` is given, the rows not in it."""
  from lanser_jax.corpora import generic
  options = decode.AudioOptions(sample_rate=SAMPLE_RATE, max_seconds=600.0, min_seconds=0.1)
  rows, clips, skipped = [], [], []
  excluded = excluded or {}
  for row in generic.read_utterances(manifest):
    if isinstance(row, manifests.RejectedRow):
      skipped.append({"utt_id": row.utt_id, "reason": row.reason})
      continue
    if row.utt_id in excluded or (only is not None and row.utt_id not in only):
      continue
    try:
      clips.append(decode.load(row.audio, row.offset, row.duration, options).samples)
    except (decode.AudioError, OSError, ValueError) as e:
      skipped.append({"utt_id": row.utt_id, "reason": f"{type(e).__name__}: {e}"})
      continue
    rows.append(row)
    if limit and len(rows) >= limit:
      break
  if len(rows) < 5:
    raise ValueError(f"{manifest}: only {len(rows)} usable utterances (skipped {skipped[:3]}..., "
                     f"{len(excluded)} left out as the runs' training or validation utterances); need >= 5")
  return rows, clips, skipped


def split_ids(data_dir: str, split: str) -> set[str]:
  """utt_ids of one split of a feature folder (empty when the folder or split does not exist)."""
  from lanser_jax.input_pipeline import pipeline
  if not data_dir or not fileio.glob(os.path.join(data_dir, f"{split}-*-of-*.array_record")):
    return set()
  source = pipeline.open_source(data_dir, split)  # an incomplete split fails here, naming the folder
  return {records.decode(source[i]).utt_id for i in range(len(source))}


def run_data(workdir: str) -> tuple[str, list[str]]:
  """A run's feature folder (config.json data.dir) and the splits it trained and selected checkpoints on."""
  config = fileio.read_json(os.path.join(workdir, "config.json"))
  data = config.get("data", {})
  return data.get("dir", ""), [s for s in (data.get("train_split", "train"), data.get("eval_split", "")) if s]


def choose_utterances(workdirs: Sequence[tuple[str, str]], split: str) -> tuple[dict[str, str], set[str] | None]:
  """(excluded utt_id -> why, only these utt_ids or None) for --split: held_out leaves out every utterance any run
  trained or selected its checkpoint on; all keeps every row; a split name keeps that split of the runs' feature
  folders (the union over runs)."""
  if split == "all":
    return {}, None
  excluded, only = {}, set()
  for name, workdir in workdirs:
    data_dir, used = run_data(workdir)
    if split == "held_out":
      for s in used:
        for u in split_ids(data_dir, s):
          excluded.setdefault(u, f"in run {name}'s {s} split")
    else:
      only |= split_ids(data_dir, split)
  if split != "held_out" and not only:
    raise ValueError(f"--split={split}: none of the runs' feature folders has that split "
                     f"({[run_data(w)[0] for _, w in workdirs]}); use held_out, all or one of their splits")
  return excluded, (only if split != "held_out" else None)


def known_values(rows: Sequence[manifests.Row], key: str, where: str = "manifest") -> list[dict[str, float]]:
  """Per row, the numbers under `key` as {'KEY.name': value}; names some rows lack are NaN there."""
  values = []
  for r in rows:
    d = r.extra.get(key)
    values.append({f"{key}.{k}": float(v) for k, v in (d.items() if isinstance(d, dict) else ())
                   if isinstance(v, (int, float)) and not isinstance(v, bool)})
  names = sorted({n for v in values for n in v})
  if not names:
    raise ValueError(f"{where}: no row holds a dict of numbers under {key!r} (--known)")
  return [{n: v.get(n, float("nan")) for n in names} for v in values]


def analyse(workdirs: Sequence[tuple[str, str]], manifest: str, out: str, seed: int = 0,
            test_fraction: float = 0.3, limit: int = 0, batch_size: int = 32, log=print,
            known: str = "", split: str = "held_out") -> dict[str, Any]:
  import lanser_jax
  from lanser_jax.utils import progress as progress_lib

  excluded, only = choose_utterances(workdirs, split)
  rows, clips, skipped = read_clips(manifest, limit, excluded, only)
  planted = known_values(rows, known, manifest) if known else None
  fileio.makedirs(out)
  progress = progress_lib.Progress("prosody", len(clips))
  measures = []
  for samples in clips:
    measures.append(prosody(samples))
    progress.update()
  progress.close()
  names = list(MEASURES)
  if all(isinstance(r.text, str) and r.text.strip() for r in rows):
    for m, r, samples in zip(measures, rows, clips):
      m["words_per_second"] = len(r.text.split()) / (len(samples) / SAMPLE_RATE)
    names.append("words_per_second")
  if planted:
    for m, k in zip(measures, planted):
      m.update(k)
    names += list(planted[0])
  labels = [r.label or "(none)" for r in rows]
  speakers = [r.speaker or "(none)" for r in rows]
  table, coords, dims = {}, {}, {}
  for name, workdir in workdirs:
    log(f"[analysis] embedding {len(clips)} utterances with {name} ({workdir})")
    emb = lanser_jax.load(workdir, batch_size=batch_size).embed(clips, SAMPLE_RATE)
    dims[name] = int(emb.shape[1])
    groups = [r.speaker for r in rows]
    table[name] = {m: probe_r2(emb, np.asarray([x[m] for x in measures]), seed, test_fraction, groups)
                   for m in names}
    coords[name] = maps(emb, seed)
  for method in ("pca", "tsne"):
    plot_maps(coords, labels, speakers, method, os.path.join(out, f"{method}.png"))
  plot_probes(table, os.path.join(out, "probes.png"))
  first = next(iter(table.values()))
  any_probe = next(iter(first.values())) if first else {}
  result = {"manifest": fileio.absolute(manifest), "num_utterances": len(rows), "seed": seed,
            "test_fraction": test_fraction, "known": known or None, "split": split,
            "left_out": len(excluded), "probe_split_by": any_probe.get("split_by"),
            "probe_folds": max((p["folds"] for t in table.values() for p in t.values()), default=0),
            "speakers": len({r.speaker for r in rows if r.speaker}),
            "workdirs": {n: fileio.absolute(w) for n, w in workdirs},
            "embedding_dim": dims, "probes": table, "skipped": skipped,
            "measure_means": {m: float(np.nanmean([x[m] for x in measures])) for m in names}}
  fileio.write_text(os.path.join(out, "prosody.jsonl"), "".join(
      json.dumps({"utt_id": r.utt_id, "label": r.label, "speaker": r.speaker, **m}, ensure_ascii=False) + "\n"
      for r, m in zip(rows, measures)))
  records.write_json(os.path.join(out, "analysis.json"), result)
  fileio.write_text(os.path.join(out, "analysis.md"), markdown(result))
  return result


def markdown(result: dict[str, Any]) -> str:
  runs = list(result["probes"])
  measures = list(next(iter(result["probes"].values())))
  fmt = lambda p: "-" if p["r2"] is None else f"{p['r2']:.3f} ± {p.get('r2_std') or 0:.3f}"  # noqa: E731
  lines = [f"Held-out R² of ridge probes from frozen embeddings (mean ± sample std over "
           f"{result.get('probe_folds', '?')} folds split by {result.get('probe_split_by', 'utterance')}, seed "
           f"{result['seed']}), {result['num_utterances']} utterances of split `{result.get('split', 'all')}`"
           + (f" ({result['left_out']} training/validation utterances of the runs left out)"
              if result.get("left_out") else "") + ".", "",
           "| measure | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
  for m in measures:
    lines.append(f"| {m} | " + " | ".join(fmt(result["probes"][r][m]) for r in runs) + " |")
  return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Command line.

FLAGS = flags.FlagValues()  # this command's own (lanser_jax/utils/cli.py says why)
_WORKDIRS = flags.DEFINE_multi_string("workdir", None, "NAME=RUN or RUN; repeat for each run.", flag_values=FLAGS)
_MANIFEST = flags.DEFINE_string("manifest", None, "Utterances to analyse (audio, label, speaker).",
                                flag_values=FLAGS)
_OUT = flags.DEFINE_string("out", None, "Output folder (default: <first run>/analysis).", flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the held-out split and of t-SNE.", flag_values=FLAGS)
_TEST_FRACTION = flags.DEFINE_float("test_fraction", 0.3, "Share held out per probe fold: round(1/x) folds, by "
                                    "speaker where the rows name speakers.", flag_values=FLAGS)
_SPLIT = flags.DEFINE_string("split", "held_out", "held_out: rows no run trained or validated on (read from each "
                             "run's feature folder); all; or a split name of the runs' feature folders.",
                             flag_values=FLAGS)
_LIMIT = flags.DEFINE_integer("limit", 0, "First N usable utterances (0: all).", flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Windows per model call.", flag_values=FLAGS)
_KNOWN = flags.DEFINE_string("known", "", "Manifest key of per-utterance numbers to probe too (e.g. prosody).",
                             flag_values=FLAGS)
flags.mark_flags_as_required(["workdir", "manifest"], flag_values=FLAGS)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  workdirs = [parse_workdir(w) for w in _WORKDIRS.value]
  if len({n for n, _ in workdirs}) != len(workdirs):
    raise app.UsageError(f"--workdir names repeat: {[n for n, _ in workdirs]}")
  out = _OUT.value or os.path.join(workdirs[0][1], "analysis")
  result = analyse(workdirs, _MANIFEST.value, out, _SEED.value, _TEST_FRACTION.value, _LIMIT.value,
                   _BATCH_SIZE.value, log=cli.log, known=_KNOWN.value, split=_SPLIT.value)
  print(markdown(result))
  print(f"wrote {out}/analysis.md, analysis.json, prosody.jsonl, pca.png, tsne.png, probes.png")
  return 0


def run():
  """The `lanser-analysis` entry point."""
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
