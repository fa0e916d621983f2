"""IEMOCAP and CREMA-D evaluation protocols on fake release trees of the real layout."""

import collections
import importlib.util
import json
import os

import numpy as np
import pytest
import soundfile

from lanser_jax.corpora import manifests, protocols
from lanser_jax.input_pipeline import records, subsets
from lanser_jax.corpora import emotion
from lanser_jax.stages import chain

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CODES = ("neu", "hap", "exc", "sad", "ang", "fru", "neu", "sad", "ang", "neu", "xxx")  # fru, xxx: rejected
SPEAKERS = [f"Ses{k:02d}{g}" for k in range(1, 6) for g in "FM"]


def load_config_module(name):
  spec = importlib.util.spec_from_file_location(f"{name}_config",
                                                os.path.join(ROOT, "lanser_jax", "experiments", "labeling", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def make_iemocap_release(root, per_speaker_dialog=len(CODES), seconds=0.3):
  """Five sessions, each with an improvised and a scripted dialogue in which both speakers talk:
  SessionK/dialog/EmoEvaluation/<dialog>.txt, SessionK/dialog/transcriptions/<dialog>.txt and
  SessionK/sentences/wav/<dialog>/<utt>.wav, as in IEMOCAP_full_release."""
  sr = 16000
  samples = (0.1 * np.sin(np.arange(int(seconds * sr)) * 0.05)).astype(np.float32)
  for k in range(1, 6):
    sdir = os.path.join(root, f"Session{k}")
    for dialog in (f"Ses{k:02d}F_impro01", f"Ses{k:02d}M_script01_1"):
      emo, trans = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"], []
      for g in "FM":
        for j in range(per_speaker_dialog):
          utt = f"{dialog}_{g}{j:03d}"
          code = CODES[(j + k + (g == "M")) % len(CODES)]
          emo.append(f"[{j}.0100 - {j}.9000]\t{utt}\t{code}\t[2.5000, 3.0000, 2.5000]\nC-E1:\tNeutral;\t()\n\n")
          trans.append(f"{utt} [{j:03d}.0100-{j:03d}.9000]: words {j} of {g}.\n")
          path = os.path.join(sdir, "sentences", "wav", dialog, utt + ".wav")
          os.makedirs(os.path.dirname(path), exist_ok=True)
          soundfile.write(path, samples, sr)
      for sub, lines in (("EmoEvaluation", emo), ("transcriptions", trans)):
        os.makedirs(os.path.join(sdir, "dialog", sub), exist_ok=True)
        with open(os.path.join(sdir, "dialog", sub, dialog + ".txt"), "w") as f:
          f.writelines(lines)


def write_emobox_lists(emobox_dir, release_rows, dataset="iemocap", name="iemocap", folds=range(1, 6),
                       drop_every=9):
  """EmoBox-style fold lists (leave-one-session-out, as EmoBox's IEMOCAP folds), leaving every
  `drop_every`-th utterance out and listing one utterance that is not in the release."""
  for k in folds:
    d = os.path.join(emobox_dir, name, f"fold_{k}")
    os.makedirs(d, exist_ok=True)
    lines = {"train": [], "test": []}
    for i, r in enumerate(release_rows):
      if i % drop_every == 0:
        continue
      split = "test" if (dataset != "iemocap" and i % 5 == 0) or (
          dataset == "iemocap" and r.extra["session"] == k) else "train"
      session = r.extra.get("session", 0)
      dialog = os.path.basename(os.path.dirname(r.audio))
      lines[split].append(json.dumps({
          "key": f"{name}-{r.utt_id}", "dataset": name, "type": "raw", "sample_rate": 16000,
          "wav": f"downloads/{name}/Session{session}/sentences/wav/{dialog}/{r.utt_id}.wav",
          "task": "category", "length": 0.3, "emo": r.extra.get("emotion_code", "neu"), "channel": 1}))
    lines["train"].append(json.dumps({"key": f"{name}-Ses09F_none_F000",  # not in the release
                                      "wav": "downloads/x/Ses09F_none_F000.wav", "emo": "neu"}))
    for split, ls in lines.items():
      with open(os.path.join(d, f"{name}_{split}_fold_{k}.jsonl"), "w") as f:
        f.write("\n".join(ls) + "\n")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release")
  make_iemocap_release(root)
  rows = [r for r in emotion.iemocap_rows(root) if isinstance(r, manifests.Row)]
  emobox_dir = os.path.join(os.path.dirname(root), "EmoBox", "data")
  write_emobox_lists(emobox_dir, rows)
  return {"root": root, "rows": rows, "emobox_dir": emobox_dir}


def _check_fold(rows, assign, protocol):
  by_id = {r.utt_id: r for r in rows}
  assert set(assign) == set(by_id)  # every utterance gets exactly one answer per fold
  assert set(assign.values()) <= {"train", "validation", "test", ""}
  split_utts = collections.defaultdict(set)
  for u, s in assign.items():
    split_utts[s].add(u)
  assert split_utts["train"] and split_utts["validation"] and split_utts["test"]
  speakers = {s: {by_id[u].speaker for u in us} for s, us in split_utts.items()}
  if protocol != "emobox":
    assert not split_utts[""]  # only EmoBox's lists leave utterances out
  if protocol in ("loso", "loso_spkval", "emobox"):
    test_sessions = {by_id[u].extra["session"] for u in split_utts["test"]}
    assert len(test_sessions) == 1 and speakers["test"].isdisjoint(speakers["train"] | speakers["validation"])
  if protocol in ("loso_spkval", "lospk"):
    assert len(speakers["validation"]) == 1 and speakers["validation"].isdisjoint(speakers["train"])
  if protocol == "lospk":
    assert len(speakers["test"]) == 1
    (test_speaker,), (val_speaker,) = speakers["test"], speakers["validation"]
    assert test_speaker[:5] == val_speaker[:5] and test_speaker != val_speaker  # the two of one session
    assert not any(s[:5] == test_speaker[:5] for s in speakers["train"])
  if protocol in ("loso", "emobox"):
    # validation is drawn from the training sessions, stratified by label: every class of train is in it
    assert {by_id[u].label for u in split_utts["validation"]} == {by_id[u].label for u in split_utts["train"]}
    frac = len(split_utts["validation"]) / (len(split_utts["validation"]) + len(split_utts["train"]))
    assert 0.15 < frac < 0.3
  return split_utts, speakers


@pytest.mark.parametrize("protocol", sorted(protocols.IEMOCAP_PROTOCOLS))
def test_iemocap_protocol_folds(release, protocol):
  rows, tested = release["rows"], collections.Counter()
  num_folds = protocols.IEMOCAP_PROTOCOLS[protocol]
  for fold in range(1, num_folds + 1):
    assign = protocols.iemocap_assignment(rows, protocol, fold, emobox_dir=release["emobox_dir"])
    split_utts, speakers = _check_fold(rows, assign, protocol)
    tested.update(speakers["test"] if protocol == "lospk" else
                  {s[:5] for s in speakers["test"]})
    again = protocols.iemocap_assignment(list(reversed(rows)), protocol, fold,
                                         emobox_dir=release["emobox_dir"])
    assert again == assign  # seeded and independent of manifest order
  if protocol == "lospk":
    assert tested == collections.Counter(SPEAKERS)  # each speaker tested exactly once
  else:
    assert tested == collections.Counter(f"Ses{k:02d}" for k in range(1, 6))  # each session once
  with pytest.raises(ValueError, match="folds 1.."):
    protocols.iemocap_assignment(rows, protocol, num_folds + 1, emobox_dir=release["emobox_dir"])


def test_loso_validation_seed_and_spkval_speakers(release):
  rows = release["rows"]
  a = protocols.iemocap_assignment(rows, "loso", 1, seed=0)
  b = protocols.iemocap_assignment(rows, "loso", 1, seed=1)
  assert a != b and {u for u, s in a.items() if s == "test"} == {u for u, s in b.items() if s == "test"}
  val_speakers = set()
  for fold in range(1, 6):
    assign = protocols.iemocap_assignment(rows, "loso_spkval", fold)
    val_speakers |= {r.speaker for r in rows if assign[r.utt_id] == "validation"}
  assert len(val_speakers) == 5 and {s[-1] for s in val_speakers} == {"F", "M"}


def test_emobox_lists_missing_file_and_excluded_utterances(release, tmp_path):
  rows = release["rows"]
  assign = protocols.iemocap_assignment(rows, "emobox", 2, emobox_dir=release["emobox_dir"])
  assert sum(s == "" for s in assign.values()) == len(range(0, len(rows), 9))  # left out of the lists
  with pytest.raises(FileNotFoundError, match=r"iemocap_test_fold_3\.jsonl"):
    os.makedirs(tmp_path / "iemocap" / "fold_3")
    (tmp_path / "iemocap" / "fold_3" / "iemocap_train_fold_3.jsonl").write_text("")
    protocols.iemocap_assignment(rows, "emobox", 3, emobox_dir=str(tmp_path))
  with pytest.raises(ValueError, match="emobox_dir"):
    protocols.iemocap_assignment(rows, "emobox", 1)


def test_emobox_on_iemocap_is_the_loso_experiment(release, tmp_path):
  """EmoBox's IEMOCAP folds are leave-one-session-out over the same utterances: given lists of the manifest's
  own pool, emobox assigns every utterance of every fold exactly as loso does, validation included."""
  rows = release["rows"][1:]  # write_emobox_lists leaves its first row out; the manifest here lacks it too
  write_emobox_lists(str(tmp_path), release["rows"], drop_every=len(release["rows"]) + 1)
  for fold in range(1, 6):
    assert (protocols.iemocap_assignment(rows, "emobox", fold, emobox_dir=str(tmp_path))
            == protocols.iemocap_assignment(rows, "loso", fold))


@pytest.mark.parametrize("protocol,fold", [("loso", 2), ("loso_spkval", 4), ("lospk", 7), ("emobox", 5)])
def test_features_stage_writes_the_protocol_folds(release, tmp_path, protocol, fold):
  """The labelling config end to end: records on disk, split by the protocol; label subsets nested,
  drawn from train only."""
  config = load_config_module("iemocap").get_config(
      f"protocol={protocol},fold={fold},emobox_dir={release['emobox_dir']}")
  config.manifest.root = release["root"]
  config.num_pieces = 2
  work = str(tmp_path / "w")
  summary = chain.run_stages(config, work, "all", (0, 1))
  assert summary["balanced"]
  feature_dir = os.path.join(work, config.features.dir_name)
  info = records.read_dataset_info(feature_dir)
  assert info["protocol"]["name"] == protocol and info["protocol"]["fold"] == fold
  on_disk = {s: set(_utts(feature_dir, s)) for s in ("train", "validation", "test")}
  assign = protocols.iemocap_assignment(release["rows"], protocol, fold, emobox_dir=release["emobox_dir"])
  for s, utts in on_disk.items():
    assert utts == {u for u, a in assign.items() if a == s}
  assert not (on_disk["test"] & (on_disk["train"] | on_disk["validation"]))
  assert not (on_disk["train"] & on_disk["validation"])
  assert summary["excluded_by_split_map"] == sum(a == "" for a in assign.values())
  train_ids, labels = _utts(feature_dir, "train"), subsets.split_labels(feature_dir, "train")
  previous = set()
  for fraction in (0.1, 0.3, 0.5, 1.0):
    chosen = {train_ids[i] for i in subsets.nested_stratified_subset(labels, fraction, seed=0)}
    assert previous <= chosen and not (chosen & on_disk["validation"]) and chosen <= on_disk["train"]
    previous = chosen
  assert previous == on_disk["train"]


def _utts(feature_dir, split):
  from lanser_jax.input_pipeline import pipeline
  source = pipeline.open_source(feature_dir, split)
  return [records.decode(source[i]).utt_id for i in range(len(source))]


def test_nested_subsets_skip_records_without_a_label():
  labels = np.array([-1, 0, 1, -1, 0, 1, 1, -1, 0, 0, 1, -1])
  for fraction in (0.2, 0.5, 1.0):
    chosen = subsets.nested_stratified_subset(labels, fraction, seed=3)
    assert np.all(labels[chosen] >= 0)
  assert set(subsets.nested_stratified_subset(labels, 1.0, seed=3)) == set(np.flatnonzero(labels >= 0))
  # The labelled records drawn are those drawn without the unlabelled ones present.
  labelled = np.flatnonzero(labels >= 0)
  with_unlabelled = subsets.nested_stratified_subset(labels, 0.5, seed=3)
  without = labelled[subsets.nested_stratified_subset(labels[labelled], 0.5, seed=3)]
  assert sorted(with_unlabelled) == sorted(without)


# ---------------------------------------------------------------------------------------------------
# CREMA-D.


def test_crema_d_tfds_export_with_tfds_mock_data(tmp_path):
  """split=tfds on TFDS's own mock of crema_d (the builder's real features and splits, fake audio):
  every example is exported to a 16-bit WAV or rejected with its reason, and a rerun reuses the files."""
  tfds = pytest.importorskip("tensorflow_datasets")
  export = str(tmp_path / "export")
  with tfds.testing.mock_data(num_examples=6, max_value=30000):
    rows = list(emotion.crema_d_rows(split="tfds", export_dir=export))
    names = tfds.builder("crema_d").info.features["label"].names
    expected = {s: list(tfds.as_numpy(tfds.builder("crema_d").as_dataset(split=s, shuffle_files=False)))
                for s in ("train", "validation", "test")}
  assert all(isinstance(r, manifests.Row) for r in rows) and len(rows) == 18
  assert collections.Counter(r.split for r in rows) == {"train": 6, "validation": 6, "test": 6}
  assert len({r.utt_id for r in rows}) == 18
  for r in rows:
    ex = expected[r.split][r.extra["tfds_index"]]
    samples, sr = soundfile.read(r.audio, dtype="int16")
    assert sr == 16000 and np.array_equal(samples, ex["audio"].astype(np.int16))
    assert r.label == emotion.CREMA_D_LABELS[names[int(ex["label"])]] and r.label in emotion.CREMA_D_CLASSES
    assert r.speaker == ex["speaker_id"].decode()
  mtimes = {r.audio: os.path.getmtime(r.audio) for r in rows}
  with tfds.testing.mock_data(num_examples=6, max_value=30000):
    again = list(emotion.crema_d_rows(split="tfds", export_dir=export))
  assert again == rows
  assert all(os.path.getmtime(a) == t for a, t in mtimes.items())  # exported once
  assert not [p for p in os.listdir(os.path.join(export, "train")) if p.endswith(".tmp")]


def test_crema_d_tfds_accounting_through_the_manifest(tmp_path):
  """Clips TFDS holds but 16-bit WAV cannot (samples past 32767) are rejected and counted."""
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=8, max_value=40000):
    counts = manifests.write_manifest(
        str(tmp_path / "m.jsonl"), emotion.crema_d_rows(split="tfds", export_dir=str(tmp_path / "wav")),
        str(tmp_path / "e.jsonl"))
  errors = [json.loads(l) for l in open(tmp_path / "e.jsonl")]
  assert counts["written"] + counts["rejected"] == 24 and counts["rejected"] == len(errors) > 0
  assert all("16-bit range" in e["reason"] for e in errors)
  written = list(manifests.read_manifest(str(tmp_path / "m.jsonl")))
  assert len(written) == counts["written"] and all(os.path.exists(r.audio) for r in written)


def test_crema_d_tfds_not_prepared_is_named(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(FileNotFoundError, match="tfds build crema_d"):
    list(emotion.crema_d_rows(split="tfds", tfds_data_dir=str(tmp_path / "empty"),
                              export_dir=str(tmp_path / "x")))


def test_crema_d_emobox_split_through_the_features_stage(tmp_path):
  from builders import make_crema_d
  root = str(tmp_path / "CREMA-D")
  make_crema_d(root, actors=range(1001, 1021))
  rows = [r for r in emotion.crema_d_rows(root) if isinstance(r, manifests.Row)]
  emobox_dir = str(tmp_path / "EmoBox" / "data")
  write_emobox_lists(emobox_dir, rows, dataset="crema_d", name="cremad", folds=(1,), drop_every=7)
  config = load_config_module("crema_d").get_config(f"split=emobox,emobox_dir={emobox_dir}")
  assert config.manifest.split == "actor_seeded"  # the same manifest as the default split
  config.manifest.root = root
  config.num_pieces = 1
  summary = chain.run_stages(config, str(tmp_path / "w"), "all", (0, 1))
  assert summary["balanced"]
  feature_dir = str(tmp_path / "w" / "features_emobox")
  on_disk = {s: set(_utts(feature_dir, s)) for s in ("train", "validation", "test")}
  listed = {s: {json.loads(l)["wav"].rsplit("/", 1)[1][:-4] for l in open(
      os.path.join(emobox_dir, "cremad", "fold_1", f"cremad_{s}_fold_1.jsonl"))} for s in ("train", "test")}
  assert on_disk["test"] == listed["test"] & {r.utt_id for r in rows}
  assert on_disk["train"] | on_disk["validation"] == listed["train"] & {r.utt_id for r in rows}
  assert on_disk["validation"] and not (on_disk["train"] & on_disk["validation"])
  assert summary["excluded_by_split_map"] == len(range(0, len(rows), 7))
  with pytest.raises(FileNotFoundError, match="cremad_train_fold_1.jsonl"):
    protocols.emobox_assignment(rows, "crema_d", 1, str(tmp_path / "nowhere"))
