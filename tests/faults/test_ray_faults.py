"""Faults under the Ray runner, on a real local Ray: an actor's process killed by SIGKILL in the middle of a
piece is restarted and the piece retried, with the bytes of an unbroken run; a piece that fails on every
attempt ends in the errors file and the summary, the other pieces finish, the job ends with one line naming
the piece (never hangs), and the rerun does only what is missing."""

import json
import os
import signal
import threading
import time

import pytest

from ray_helpers import BreaksOnClip, KilledOnceTranscriber, ray_session  # noqa: F401  (fixture)
from stage_helpers import FakeLabeler, make_bad_folder, small_config, tree_bytes
from lanser_jax.stages import chain, pieces
from lanser_jax.utils import faults

pytestmark = [pytest.mark.faults, pytest.mark.subprocess, pytest.mark.slow]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("ray_faults") / "corpus")
  make_bad_folder(root)
  return root


def _lines(path: str) -> list[str]:
  with open(path) as f:
    return f.read().split()


def _kill_when_started(marker: str, killed: list, timeout: float = 240.0):
  deadline = time.monotonic() + timeout
  while not os.path.exists(marker):
    if time.monotonic() > deadline:
      return
    time.sleep(0.05)
  with open(marker) as f:
    pid = int(f.read())
  os.kill(pid, signal.SIGKILL)
  killed.append(pid)


def test_an_actor_killed_mid_piece_is_retried_with_identical_outputs(tmp_path, corpus, ray_session):  # noqa: F811
  from lanser_jax.stages import ray_runner
  c = small_config(corpus, 3)
  # The unbroken run uses the same class (the provenance names it), past its kill: its marker exists already.
  done_marker = str(tmp_path / "no_kill.pid")
  with open(done_marker, "w") as f:
    f.write("0")
  chain.run_stages(c, str(tmp_path / "unbroken"), "all", (0, 1), labeler=FakeLabeler(),
                   transcriber=KilledOnceTranscriber(done_marker))
  marker, killed = str(tmp_path / "asr_worker.pid"), []
  killer = threading.Thread(target=_kill_when_started, args=(marker, killed), daemon=True)
  killer.start()
  ray_runner.run(c, str(tmp_path / "killed"), "all", labeler=FakeLabeler(),
                 transcriber=KilledOnceTranscriber(marker))
  killer.join(5)
  assert len(killed) == 1 and killed[0] != os.getpid()  # a worker process, mid-piece, was killed
  with pytest.raises(ProcessLookupError):
    os.kill(killed[0], 0)
  want, got = tree_bytes(str(tmp_path / "unbroken")), tree_bytes(str(tmp_path / "killed"))
  assert sorted(got) == sorted(want)  # no temporary file of the killed attempt is left
  assert [p for p in want if got[p] != want[p]] == []


def test_a_piece_that_fails_every_attempt_is_reported_and_the_rest_finish(tmp_path, corpus, ray_session):  # noqa: F811
  from lanser_jax.stages import ray_runner
  c = small_config(corpus, 3)
  c.ray.max_retries = 1
  workdir, attempts = str(tmp_path / "w"), str(tmp_path / "attempts")
  started = time.monotonic()
  with pytest.raises(ray_runner.PiecesFailed) as raised:
    ray_runner.run(c, workdir, "all", labeler=FakeLabeler(), transcriber=BreaksOnClip(0.7, attempts))
  assert time.monotonic() - started < 240  # reported, not hung
  assert len(_lines(attempts)) == 2  # the first attempt and Ray's one retry
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["complete"] is False
  [failed] = summary["failed_pieces"]
  piece = failed["piece"]
  assert failed["stage"] == "asr" and failed["attempts"] == 2
  assert failed["error"] == "RuntimeError: the model breaks on this clip"
  assert summary["pieces_complete"] == {"asr": 2, "label": 2, "features": 2}
  with open(os.path.join(workdir, "errors.jsonl")) as f:
    errors = [json.loads(line) for line in f]
  lines = failed["manifest_lines"]
  assert errors == [{"utt_id": None, "stage": "asr",
                     "source": f"piece {piece} of 3 (manifest lines {lines[0]}-{lines[1]})",
                     "reason": "piece failed on all 2 attempts: RuntimeError: the model breaks on this clip"}]
  for stage_dir in ("asr", "labels", "features"):  # the other pieces went through every stage
    assert [pieces.piece_done(os.path.join(workdir, stage_dir), j, 3) for j in range(3)] == [
        j != piece for j in range(3)]
    assert not os.path.exists(os.path.join(workdir, stage_dir, "summary.json"))  # not merged
  line = faults.line(raised.value, "lanser-label", "lanser-label --runner=ray --workdir=w")
  assert line == (f"lanser-label: piece {piece} of 3 failed in the asr stage on all 2 attempts: RuntimeError: the "
                  f"model breaks on this clip; 2 of 3 pieces are complete in {workdir}; the failed pieces are "
                  f"listed in {workdir}/errors.jsonl and summary.json. Rerun: lanser-label --runner=ray "
                  "--workdir=w (--verbose shows the traceback)")

  # The rerun (the clip no longer breaks the model) does the missing piece; the result is an unbroken run's.
  mended = BreaksOnClip(99.0, attempts)  # the same class (the provenance names it), breaking on no clip
  ray_runner.run(c, workdir, "all", labeler=FakeLabeler(), transcriber=mended)
  assert len(_lines(attempts)) == 2
  chain.run_stages(c, str(tmp_path / "unbroken"), "all", (0, 1), labeler=FakeLabeler(), transcriber=mended)
  want, got = tree_bytes(str(tmp_path / "unbroken")), tree_bytes(workdir)
  assert sorted(got) == sorted(want) and [p for p in want if got[p] != want[p]] == []
