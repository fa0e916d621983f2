"""Nothing vanishes from the labelling stages: odd folder entries, cropped seconds, all-rejected runs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from helpers import write_audio_container
from lanser_jax.stages import manifest, pieces
from lanser_jax.stages import stage as stage_lib
from lanser_jax.utils import progress as progress_lib
from stage_helpers import run_all, small_config, tone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _errors(path):
  return {e["utt_id"]: e for e in map(json.loads, open(path))}


def test_folder_adapter_accounts_for_links_directories_and_hidden_files(tmp_path):
  root = tmp_path / "corpus"
  os.makedirs(root / "y.wav")  # a directory named like audio
  soundfile.write(root / "good.wav", tone(1.0), 16000)
  soundfile.write(root / ".z.wav", tone(1.0), 16000)  # hidden: skipped by rule, but listed
  os.symlink(str(tmp_path / "gone.wav"), root / "x.wav")  # dangling
  os.makedirs(root / ".cache")
  soundfile.write(root / ".cache" / "w.wav", tone(1.0), 16000)  # inside a hidden folder
  open(root / "notes.txt", "w").write("not audio, no audio extension: not an utterance")
  workdir = str(tmp_path / "work")
  stage_lib.run(manifest.STAGE, small_config(str(root)), workdir, (0, 1))
  summary = pieces.read_json(os.path.join(workdir, "manifest", "summary.json"))
  assert summary["in"] == 5 and summary["written"] == 1 and summary["rejected"] == 4
  rows = [json.loads(l) for l in open(os.path.join(workdir, "manifest", "manifest.jsonl"))]
  assert [r["utt_id"] for r in rows] == ["good"]
  errors = _errors(os.path.join(workdir, "manifest", "errors.jsonl"))
  assert set(errors) == {"x", "y", ".z", ".cache/w"}
  assert errors["x"]["reason"] == f"dangling symlink: points to {tmp_path / 'gone.wav'}, which does not exist"
  assert errors["y"]["reason"].startswith("not a regular file: a directory")
  assert errors[".z"]["reason"].startswith("hidden file skipped by rule")
  assert errors[".cache/w"]["reason"].startswith("hidden file skipped by rule")
  assert summary["reasons"] == {"dangling symlink": 1, "not a regular file": 1, "hidden file skipped by rule": 2}


def test_cropped_seconds_are_counted_per_stage_and_in_total(tmp_path):
  import av
  root, workdir = tmp_path / "corpus", str(tmp_path / "work")
  os.makedirs(root)
  soundfile.write(root / "short_happy.wav", tone(1.0), 16000)
  soundfile.write(root / "long.wav", tone(3.0), 16000)  # 1 s over audio.max_seconds=2 (read by libsndfile)
  write_audio_container(av, str(root / "long_movie.m4a"), tone(5.0), 16000)  # 3 s over it (read by PyAV)
  summary = run_all(small_config(str(root), shards=2), workdir)
  assert summary["written"] == 3 and summary["balanced"]
  for stage in ("asr", "features"):
    s = json.load(open(os.path.join(workdir, {"features": "features"}.get(stage, stage), "summary.json")))
    assert s["cropped"] == 2 and s["cropped_seconds"] == pytest.approx(4.0, abs=0.1), (stage, s)
    assert summary["stages"][stage]["cropped_seconds"] == pytest.approx(4.0, abs=0.1)
  assert summary["cropped"] == 2 and summary["cropped_seconds"] == pytest.approx(4.0, abs=0.1)
  assert json.load(open(os.path.join(workdir, "summary.json")))["cropped_seconds"] == summary["cropped_seconds"]


def _silent_folder(root, n=3):
  os.makedirs(root)
  for i in range(n):
    soundfile.write(os.path.join(root, f"quiet{i}.wav"), np.zeros(16000, np.float32), 16000)


def test_all_rejected_run_raises_after_writing_every_summary(tmp_path):
  root, workdir = str(tmp_path / "corpus"), str(tmp_path / "work")
  _silent_folder(root)
  with pytest.raises(pieces.NothingSurvived,
                     match=rf"^0 of 3 utterances survived the stages; reasons in {workdir}/errors.jsonl$"):
    run_all(small_config(root), workdir)
  for d in ("manifest", "asr", "labels", "features"):
    assert os.path.exists(os.path.join(workdir, d, "summary.json")), d
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert summary["in"] == 3 and summary["written"] == 0 and summary["rejected"] == 3 and summary["balanced"]
  assert [e["reason"][:6] for e in _errors(os.path.join(workdir, "errors.jsonl")).values()] == ["silent"] * 3
  assert not os.path.exists(os.path.join(workdir, "features", "dataset.json"))


@pytest.mark.subprocess
def test_all_silent_folder_exits_non_zero_with_a_short_message(tmp_path):
  root, workdir = str(tmp_path / "corpus"), str(tmp_path / "w")
  _silent_folder(root, 2)
  cmd = [sys.executable, "-m", "lanser_jax.stages.main", "--config=lanser_jax/experiments/labeling/local_tiny.py",
         f"--workdir={workdir}", f"--config.manifest.root={root}", "--config.features.label_source=none",
         "--config.num_pieces=1", "--config.stages=('manifest','features')", "--stage=all"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == \
      f"error: 0 of 2 utterances survived the stages; reasons in {workdir}/errors.jsonl"
  for p in ("manifest/summary.json", "features/summary.json", "summary.json"):
    assert os.path.exists(os.path.join(workdir, p)), p


def test_stage_progress_lines_carry_numbers():
  import io
  stream = io.StringIO()
  p = progress_lib.Progress("features 0/1", total=5, interval=0.0, stream=stream)
  p.update(1)
  p.update(2)
  p.close()
  lines = stream.getvalue().splitlines()
  assert len(lines) == 3
  for line in lines:
    assert "nan" not in line and "?" not in line, line
  assert "ETA" in lines[0] and "/s" in lines[0]
