"""Training with a bucket workdir and a bucket feature folder, against the GCS emulator and moto's S3 server.

One run per scheme (gs:// with its features in the bucket, s3:// with local features) is killed with SIGKILL
after its first checkpoint and started again; it must end with exactly the parameters of an unbroken run on
the local disk, leave nothing in its working directory, and load from the bucket to the same probabilities
as a local copy of itself; from s3:// also as init_from.
"""

import http.server
import os
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from lanser_jax.input_pipeline import pipeline, records, synthetic
from lanser_jax.engine import checkpointing
from lanser_jax.utils import fileio
from lanser_jax.serving import classifier

pytestmark = pytest.mark.cloud

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYNTH = dict(num_classes=4, mel_bins=32, num_train=96, num_eval=21, min_frames=20, max_frames=160,
             num_shards=2, seed=0)  # conftest's synth_dir


# The tests' tiny configuration (so the compiled steps are the other tests'), with checkpoints at 5 and 10.
RUN = dict(num_train_steps=10, checkpoint_every_steps=5, eval_every_steps=1000, log_every_steps=5,
           **{"data.test_split": ""})


def _cmd(workdir, data_dir):
  """`RUN` as a command line, with absolute paths: the run starts in an empty folder that must stay empty."""
  from helpers import SYNTHETIC_RUNLOCAL, tiny_flags
  flags = tiny_flags(data_dir, **RUN)
  return [sys.executable, "-m", "lanser_jax.main", f"--config={REPO}/{SYNTHETIC_RUNLOCAL}", *flags[1:],
          f"--workdir={workdir}"]


def _params(workdir):
  return checkpointing.load_variables(checkpointing.resolve_state_path(workdir, "latest"))


@pytest.fixture(scope="module")
def unbroken(synth_dir, tmp_path_factory):
  """The unbroken reference run of `RUN` on the local disk, in this process, shared by both schemes."""
  from helpers import tiny_config
  from lanser_jax import train
  local = str(tmp_path_factory.mktemp("unbroken"))
  train.train_and_evaluate(tiny_config(synth_dir, **RUN), local)
  return local


@pytest.mark.subprocess
@pytest.mark.slow  # per scheme one short training run in a subprocess (killed), its restart in this process
@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_bucket_workdir_kill_restart_load(scheme, synth_dir, unbroken, tmp_path, monkeypatch, request):
  url = request.getfixturevalue({"gs": "gcs_url", "s3": "s3_url"}[scheme])
  if scheme == "gs":
    # The feature folder written straight to the bucket (shards written locally, uploaded whole): the same
    # bytes as the local one.
    data = fileio.join(url, "features")
    synthetic.write_synthetic(data, **SYNTH)
    assert fileio.read_bytes(fileio.join(data, "train-00001-of-00002.array_record")) == \
        open(os.path.join(synth_dir, "train-00001-of-00002.array_record"), "rb").read()
    assert not [p for p in fileio.walk_files(data) if p.endswith(".tmp")]
  else:
    data = synth_dir  # ArrayRecord cannot read s3:// (test_s3_data_dir_fails_at_start_and_s3_files_work)

  workdir = fileio.join(url, "run")
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  env = dict(os.environ, PYTHONPATH=REPO)
  log = tmp_path / "killed.log"
  # Killed once step 5 is committed (Orbax's commit_success.txt, on both stores), so the restart resumes.
  first = fileio.join(workdir, "checkpoints", "5", "commit_success.txt")
  with open(log, "wb") as f:
    proc = subprocess.Popen(_cmd(workdir, data), cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
  deadline = time.time() + 240
  while not fileio.exists(first) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
  assert fileio.exists(first), log.read_text()[-3000:]
  assert not fileio.exists(fileio.join(workdir, "results.json"))

  # The restart, in this process (the killed one was `python -m lanser_jax.main`), from the same empty folder.
  from helpers import tiny_config
  from lanser_jax import train
  resumed, restore = [], checkpointing.restore_for_resume

  def restore_and_record(*args, **kwargs):
    resumed.append(restore(*args, **kwargs))
    return resumed[-1]

  monkeypatch.setattr(checkpointing, "restore_for_resume", restore_and_record)
  monkeypatch.chdir(cwd)
  train.train_and_evaluate(tiny_config(data, **RUN), workdir)
  monkeypatch.undo()
  assert resumed[0].step in (5, 10)  # resumed from the killed run's checkpoint, not started afresh
  assert os.listdir(cwd) == []  # no ./gs:/..., ./s3:/... and no stray files
  jax.tree.map(np.testing.assert_array_equal, _params(workdir), _params(unbroken))
  assert checkpointing.resolve_state_path(workdir, "latest") == fileio.join(workdir, "checkpoints/10/state")

  names = fileio.listdir(workdir)
  for name in ("config.json", "results.json", "metrics.jsonl", "data", "checkpoints"):
    assert name in names, names
  assert fileio.listdir(fileio.join(workdir, "data")) == ["dataset.json", "label_names.json", "stats.json"]
  assert fileio.read_json(fileio.join(workdir, "results.json"))["steps"] == 10
  steps = [r["step"] for r in fileio.read_jsonl(fileio.join(workdir, "metrics.jsonl")) if "train/loss" in r]
  assert steps[-1] == 10 and set(range(5, 11, 5)) <= set(steps)  # the killed run's lines, then the rest
  # TensorBoard events (written locally by TensorFlow, copied into the bucket): readable and complete.
  events = [n for n in names if n.startswith("events.out.tfevents")]
  assert events
  import tensorflow as tf
  tb = tmp_path / "tb"
  for n in events:
    fileio.copy(fileio.join(workdir, n), str(tb / n))
  tags = {(v.tag, e.step) for n in events for e in tf.compat.v1.train.summary_iterator(str(tb / n))
          for v in e.summary.value}
  assert ("train/loss", 10) in tags

  # lanser_jax.load from the bucket == from a local copy of the same workdir.
  copy = str(tmp_path / "copy")
  fileio.copy_tree(workdir, copy)
  src = pipeline.open_source(data, "validation")  # for gs://, Grain's ArrayRecord source reading the bucket
  mels = [records.decode(src[i]).log_mel for i in range(len(src))]
  p_bucket = [p.probabilities for p in classifier.load(workdir, batch_size=8).predict_log_mel(mels)]
  p_local = [p.probabilities for p in classifier.load(copy, batch_size=8).predict_log_mel(mels)]
  np.testing.assert_array_equal(np.stack(p_bucket), np.stack(p_local))

  if scheme == "s3":
    # init_from=s3://... (what train.py calls): every backbone array from the bucket, the head left new.
    local = _params(copy)
    zeros = jax.tree.map(np.zeros_like, local)
    params, stats = checkpointing.init_backbone_from(workdir, "latest", zeros["params"],
                                                     zeros.get("batch_stats", {}))
    assert set(params) == set(local["params"]) and "head" in params
    jax.tree.map(np.testing.assert_array_equal, params["head"], zeros["params"]["head"])
    jax.tree.map(np.testing.assert_array_equal, {k: v for k, v in params.items() if k != "head"},
                 {k: v for k, v in local["params"].items() if k != "head"})
    jax.tree.map(np.testing.assert_array_equal, stats, local.get("batch_stats", {}))
    # The TensorStore spec (with the endpoint) lives only in memory: no object of the run holds it.
    endpoint = request.getfixturevalue("s3_server").encode()
    assert not [p for p in fileio.walk_files(workdir) if endpoint in fileio.read_bytes(p)]


def test_s3_data_dir_fails_at_start_and_s3_files_work(synth_dir, s3_url, tmp_path):
  """ArrayRecord cannot read s3://: a feature folder there is refused before any work, with what to do;
  the folder's JSON does go through s3fs."""
  from lanser_jax import train
  from helpers import tiny_config
  data = fileio.join(s3_url, "features")
  fileio.copy_tree(synth_dir, data)
  assert records.read_dataset_info(data)["splits"]["train"]["num_shards"] == 2
  assert len(records.list_shards(data, "train")) == 2
  with pytest.raises(records.RecordError, match=r"cannot read s3:// URLs; mount the bucket"):
    train.train_and_evaluate(tiny_config(data), str(tmp_path / "run"))


class _Forbidden(http.server.BaseHTTPRequestHandler):
  """A GCS endpoint that refuses every request, as for an account without read access to the bucket."""

  def do_GET(self):  # noqa: N802
    self.send_response(403)
    self.send_header("Content-Type", "application/json")
    body = b'{"error": {"code": 403, "message": "forbidden"}}'
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  def log_message(self, *args):
    pass


def test_unreadable_gs_data_dir_fails_at_start(gcs_url, tmp_path, monkeypatch):
  """A gs:// feature folder that the ArrayRecord reader cannot read fails with what to do, not mid-run.
  (gcsfs, which lists the folder, still reaches the emulator; the C++ reader gets a 403 server.)"""
  from lanser_jax import train
  from helpers import tiny_config
  data = fileio.join(gcs_url, "features")
  synthetic.write_synthetic(data, **{**SYNTH, "num_train": 8, "num_eval": 2})
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forbidden)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    monkeypatch.setenv("CLOUD_STORAGE_EMULATOR_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    with pytest.raises(records.RecordError, match=r"cannot (open|read) this shard(.|\n)*gcsfuse"):
      train.train_and_evaluate(tiny_config(data), str(tmp_path / "run"))
  finally:
    server.shutdown()
  assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("status", [503, 404])
def test_bucket_read_that_fails_once_keeps_the_step(status, synth_dir, gcs_url, monkeypatch, caplog):
  """TensorStore reads the step from gs:// through a proxy that fails the first read of one of its arrays'
  values: 503 (which the storage client retries itself) and 404 (which it does not: the restore's own retry
  reads it again). Either way the run resumes from that step and nothing is moved aside."""
  import logging
  from helpers import tiny_config
  from lanser_jax import train
  from storage_servers import FaultProxy
  workdir = fileio.join(gcs_url, "run")
  train.train_and_evaluate(tiny_config(synth_dir, **RUN), workdir)
  # The 10th and later steps' value files: `d/<hash>` objects of step 10's state.
  proxy = FaultProxy(os.environ["TENSORSTORE_GCS_HTTP_URL"], r"checkpoints%2F10%2Fstate%2F.*%2Fd%2F",
                     status=status)
  monkeypatch.setenv("TENSORSTORE_GCS_HTTP_URL", proxy.url)
  monkeypatch.setattr(checkpointing, "RETRY_WAITS_S", (0.2, 0.2))
  try:
    with caplog.at_level(logging.INFO):
      results = train.train_and_evaluate(tiny_config(synth_dir, **RUN), workdir)
  finally:
    proxy.stop()
  assert len(proxy.injected) == 1, proxy.injected
  assert any("resuming from" in r.getMessage() and r.getMessage().endswith("checkpoints/10")
             for r in caplog.records)
  assert results["steps"] == 10
  assert sorted(fileio.listdir(fileio.join(workdir, "checkpoints"))) == ["10", "5"]
