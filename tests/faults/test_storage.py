"""Storage that refuses: a read-only local workdir (a tmpfs mounted read-only), a bucket that does not exist,
a bucket that answers 403 to every request (the FaultProxy of tests/storage_servers.py in front of moto's S3
server), and an output file on a full disk, under lanser-train, lanser-label, lanser-predict and
lanser-embed. Each ends with one line naming the fault and the path, and writes nothing half-done."""

import os

import pytest

from fault_helpers import env, fault_line, run, tmpfs, train_flags
from storage_servers import FaultProxy

pytestmark = [pytest.mark.faults, pytest.mark.subprocess, pytest.mark.slow]

LABEL = "lanser_jax/experiments/labeling/crema_d.py"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny model trained on log-mel features of WAV clips (an audio front end, so predict and embed run)."""
  from builders import write_clip_features
  from helpers import tiny_config
  from lanser_jax import train
  root = tmp_path_factory.mktemp("trained")
  data_dir, wavs, _ = write_clip_features(root, {"train": 16, "validation": 4}, 1.5, train_shards=1)
  workdir = str(root / "run")
  train.train_and_evaluate(tiny_config(data_dir, num_train_steps=5, eval_every_steps=5, checkpoint_every_steps=5,
                                       **{"data.test_split": ""}), workdir)
  manifest = root / "manifest.jsonl"
  manifest.write_text("".join(f'{{"utt_id": "{u}", "audio": "{p}"}}\n' for u, p in sorted(wavs.items())[:4]))
  return {"workdir": workdir, "data_dir": data_dir, "wav": sorted(wavs.values())[0], "manifest": str(manifest)}


def test_read_only_workdir_under_train_and_label(synth_dir, tmp_path):
  from builders import make_crema_d
  make_crema_d(tmp_path / "crema")
  with tmpfs("1m", "ro") as disk:
    workdir = os.path.join(disk, "run")
    line = fault_line(run("lanser_jax.main", [*train_flags(synth_dir), f"--workdir={workdir}"]), "lanser_jax.main")
    assert line.startswith(f"lanser_jax.main: read-only storage at {workdir}"), line
    assert "Make " in line and "writable" in line and "rerun: python -m lanser_jax.main" in line, line
    line = fault_line(run("lanser_jax.stages.main", [f"--config={LABEL}", f"--workdir={workdir}",
                                                     f"--config.manifest.root={tmp_path / 'crema'}"]),
                      "lanser_jax.stages.main")
    assert line.startswith(f"lanser_jax.stages.main: read-only storage at {workdir}"), line
    assert os.listdir(disk) == []


def test_predict_and_embed_outputs_on_read_only_and_full_disks(trained, tmp_path):
  with tmpfs("1m", "ro") as disk:
    out = os.path.join(disk, "predictions.jsonl")
    line = fault_line(run("lanser_jax.serving.predict", [f"--workdir={trained['workdir']}", "--format=jsonl",
                                                         f"--output={out}", trained["wav"]]),
                      "lanser_jax.serving.predict")
    assert line.startswith(f"lanser_jax.serving.predict: read-only storage at {out}"), line
    out = os.path.join(disk, "embeddings.npz")
    line = fault_line(run("lanser_jax.serving.embed", [f"--workdir={trained['workdir']}", f"--output={out}",
                                                       f"--manifest={trained['manifest']}"]),
                      "lanser_jax.serving.embed")
    assert line.startswith("lanser_jax.serving.embed: read-only storage at " + disk), line
  out = tmp_path / "predictions.jsonl"
  os.symlink("/dev/full", str(out) + ".tmp")  # the output's temporary name: the disk is full
  line = fault_line(run("lanser_jax.serving.predict", [f"--workdir={trained['workdir']}", "--format=jsonl",
                                                       f"--output={out}", trained["wav"]]),
                    "lanser_jax.serving.predict")
  assert line.startswith(f"lanser_jax.serving.predict: disk full at {out}.tmp"), line
  assert not out.exists() and not os.path.lexists(str(out) + ".tmp")


@pytest.mark.cloud
def test_missing_bucket(synth_dir, gcs_server):
  """(On s3://, fileio.makedirs creates a missing bucket through s3fs, where the credentials allow it.)"""
  workdir = "gs://no-such-bucket-lanser/run"
  line = fault_line(run("lanser_jax.main", [*train_flags(synth_dir), f"--workdir={workdir}"]), "lanser_jax.main")
  assert line.startswith("lanser_jax.main: missing bucket at gs://no-such-bucket-lanser"), line
  assert "Create the bucket or correct the path" in line, line


@pytest.mark.cloud
def test_bucket_that_refuses_every_request(s3_server, s3_url, tmp_path):
  from builders import make_crema_d
  make_crema_d(tmp_path / "crema")
  proxy = FaultProxy(s3_server, r".", status=403, times=10**9)  # a policy that denies this job everything
  try:
    result = run("lanser_jax.stages.main", [f"--config={LABEL}", f"--workdir={s3_url}",
                                            f"--config.manifest.root={tmp_path / 'crema'}"],
                 env=env(AWS_ENDPOINT_URL=proxy.url))
  finally:
    proxy.stop()
  line = fault_line(result, "lanser_jax.stages.main")
  assert line.startswith(f"lanser_jax.stages.main: access denied at {s3_url}"), line
  assert "Give this job's credentials access" in line, line
