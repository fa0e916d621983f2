"""The sweep runner and the serving CLIs with bucket paths, against the GCS emulator and moto's S3 server.

One tiny cell is trained by `lanser_jax.tools.sweep --run --in_process` straight into a `gs://` root (a second
cell is already finished there); the same root then takes `--aggregate`'s outputs, and the trained cell's
bucket workdir is what `lanser_jax.serving.predict` and `lanser_jax.serving.embed` read, writing their outputs to the
bucket too. On moto's S3 server, an `s3://` root's skip-if-done check and `--aggregate`, and a `predict`
output. Every command is called in-process (`cli.call`), so the model is built once per command.
"""

import contextlib
import csv
import io
import json
import os
import uuid

import numpy as np
import pytest

from helpers import SYNTHETIC_RUNLOCAL, TINY_OVERRIDES
from lanser_jax.serving import embed, predict
from lanser_jax.utils import cli, fileio
from lanser_jax.serving import classifier
from lanser_jax.tools import sweep
from storage_servers import GCS_BUCKET
from builders import LABELS, write_clip_features  # the clips test_inference trains on

pytestmark = pytest.mark.cloud


@pytest.fixture(scope="module")
def swept(gcs_server, tmp_path_factory):
  """WAVs -> a local log-mel feature folder -> one tiny cell run by the sweep CLI into gs://.../sweep."""
  root = tmp_path_factory.mktemp("cloud_commands")
  # local features: the bucket path under test here is the run's, not the data's
  data_dir, wavs, examples = write_clip_features(root, {"train": 16, "validation": 4}, 1.4,
                                                 train_shards=1, test_split=True)

  overrides = {**TINY_OVERRIDES, "data.dir": data_dir, "num_train_steps": 4, "eval_every_steps": 4,
               "checkpoint_every_steps": 4, "log_every_steps": 2}
  spec = root / "bucket_sweep.py"
  spec.write_text(
      "def get_sweep(arg=None):\n"
      "  cell = lambda frac: {'name': f'frac{frac}', 'axes': {'pretrained': 'none', 'fraction': frac, 'seed': 0},\n"
      f"      'config': {SYNTHETIC_RUNLOCAL!r}, 'overrides': {overrides!r}}}\n"
      "  return [cell(0.5), cell(1.0)]\n")
  bucket = f"gs://{GCS_BUCKET}/{uuid.uuid4().hex[:12]}/sweep"
  # frac0.5 is finished already (its results.json is in the bucket): the runner must skip it.
  fileio.write_json(fileio.join(bucket, "frac0.5", "results.json"), {"test": {"ua": 0.25, "wa": 0.5}})
  cwd = os.getcwd()
  os.chdir(root)  # nothing may be created under the working directory
  try:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      rc = cli.call(sweep, ["--sweep", str(spec), "--root", bucket, "--run", "--in_process"])
  finally:
    os.chdir(cwd)
  return {"root": root, "bucket": bucket, "spec": str(spec), "rc": rc, "log": out.getvalue(), "wavs": wavs,
          "validation": examples["validation"], "workdir": fileio.join(bucket, "frac1.0")}


def test_sweep_runs_skips_and_aggregates_in_a_bucket(swept, capsys):
  assert swept["rc"] == 0, swept["log"]
  assert "2 cells, 1 already done, 1 to run" in swept["log"]
  assert "ran 1, failed 0, skipped 1" in swept["log"]
  assert sorted(os.listdir(swept["root"])) == ["bucket_sweep.py", "features", "wav"]  # no ./gs:/...
  bucket, run = swept["bucket"], swept["workdir"]
  assert not fileio.exists(fileio.join(bucket, "sweep_errors.jsonl"))
  results = fileio.read_json(fileio.join(run, "results.json"))
  assert results["steps"] == 4 and 0.0 <= results["test"]["ua"] <= 1.0
  assert fileio.listdir(fileio.join(run, "checkpoints")) == ["4"]

  # The skip-if-done check sees both finished cells in the bucket: --print lists none, --run runs none.
  assert cli.call(sweep, ["--sweep", swept["spec"], "--root", bucket, "--print"]) == 0
  captured = capsys.readouterr()
  assert captured.out == "" and "0 of 2 cells (2 done or hidden)" in captured.err
  assert cli.call(sweep, ["--sweep", swept["spec"], "--root", bucket, "--run", "--in_process"]) == 0
  assert "2 cells, 2 already done, 0 to run" in capsys.readouterr().out

  assert cli.call(sweep, ["--sweep", swept["spec"], "--root", bucket, "--aggregate"]) == 0
  names = fileio.listdir(bucket)
  for name in ("aggregate.csv", "aggregate.md", "aggregate_folds.csv", "ua_vs_fraction.png"):
    assert name in names, names
  with fileio.open(fileio.join(bucket, "aggregate.csv")) as f:
    rows = {r["fraction"]: r for r in csv.DictReader(f)}
  assert float(rows["0.5"]["ua_mean"]) == pytest.approx(0.25)
  assert float(rows["1.0"]["ua_mean"]) == pytest.approx(results["test"]["ua"], abs=1e-4)
  assert "| none | 1.0 |" in fileio.read_text(fileio.join(bucket, "aggregate.md"))
  assert fileio.read_bytes(fileio.join(bucket, "ua_vs_fraction.png"))[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def clf(swept):
  """The bucket run loaded directly: what the CLIs' outputs are compared with."""
  assert swept["rc"] == 0, swept["log"]
  return classifier.load(swept["workdir"], batch_size=16)


def test_predict_cli_reads_a_bucket_run_and_writes_to_the_bucket(swept, clf, capsys):
  val = swept["validation"]
  inputs = [swept["wavs"][ex.utt_id] for ex in val[:3]] + ["/nonexistent.wav"]
  out = fileio.join(swept["bucket"], "predictions", "pred.jsonl")
  assert cli.call(predict, ["--workdir", swept["workdir"], "--format=jsonl", f"--output={out}", *inputs]) == 0
  assert "3 classified, 1 failed" in capsys.readouterr().err
  rows = list(fileio.read_jsonl(out))
  assert [r["file"] for r in rows] == inputs
  assert "file not found" in rows[3]["error"]
  for r, ex in zip(rows[:3], val[:3]):
    expect = clf.predict_log_mel(ex.log_mel)
    assert r["label"] == expect.label and abs(r["probability"] - expect.probability) < 1e-5
  assert fileio.listdir(fileio.join(swept["bucket"], "predictions")) == ["pred.jsonl"]  # no temporary left


def test_embed_cli_reads_a_bucket_manifest_and_run_and_writes_to_the_bucket(swept, clf, capsys):
  val = swept["validation"]
  manifest = fileio.join(swept["bucket"], "embed", "manifest.jsonl")
  fileio.write_text(manifest, "".join(json.dumps({"utt_id": ex.utt_id, "audio": swept["wavs"][ex.utt_id]}) + "\n"
                                      for ex in val[:2]) + json.dumps({"utt_id": "gone", "audio": "/gone.wav"}) + "\n")
  out = fileio.join(swept["bucket"], "embed", "emb.npz")
  assert cli.call(embed, [f"--workdir={swept['workdir']}", f"--manifest={manifest}", f"--output={out}"]) == 0
  assert "2 embedded (dim 256), 1 failed" in capsys.readouterr().err
  with np.load(io.BytesIO(fileio.read_bytes(out))) as z:
    assert z["utt_id"].tolist() == [ex.utt_id for ex in val[:2]]
    assert z["label_names"].tolist() == LABELS
    for row, ex in zip(z["embedding"], val[:2]):
      np.testing.assert_allclose(row, clf.embed(swept["wavs"][ex.utt_id]), atol=1e-6)
  errors = list(fileio.read_jsonl(out + ".errors.jsonl"))
  assert [e["utt_id"] for e in errors] == ["gone"] and "file not found" in errors[0]["reason"]
  assert sorted(fileio.listdir(fileio.join(swept["bucket"], "embed"))) == [
      "emb.npz", "emb.npz.errors.jsonl", "manifest.jsonl"]
  assert cli.call(embed, [f"--workdir={swept['workdir']}", f"--manifest={manifest}", f"--output={out}"]) == 0
  assert "exists: skipped" in capsys.readouterr().err  # the exists check sees the bucket object


def test_s3_root_and_outputs(swept, clf, s3_url, capsys):
  """On moto's S3 server: the skip-if-done check, --aggregate and the CLIs' outputs go through s3fs (training
  into s3://, checkpoints included, is tests/cloud/test_cloud_train.py's)."""
  assert swept["rc"] == 0, swept["log"]
  root = fileio.join(s3_url, "sweep")
  fileio.copy(fileio.join(swept["workdir"], "results.json"), fileio.join(root, "frac1.0", "results.json"))
  assert cli.call(sweep, ["--sweep", swept["spec"], "--root", root, "--print"]) == 0
  captured = capsys.readouterr()
  assert captured.out.count("lanser_jax.main") == 1 and f"--workdir={root}/frac0.5" in captured.out
  assert "1 of 2 cells (1 done or hidden)" in captured.err
  assert cli.call(sweep, ["--sweep", swept["spec"], "--root", root, "--aggregate"]) == 0
  with fileio.open(fileio.join(root, "aggregate.csv")) as f:
    rows = {r["fraction"]: r for r in csv.DictReader(f)}
  assert rows["0.5"]["n"] == "0" and rows["0.5"]["missing"] == "1"
  ua = fileio.read_json(fileio.join(swept["workdir"], "results.json"))["test"]["ua"]
  assert float(rows["1.0"]["ua_mean"]) == pytest.approx(ua, abs=1e-4)
  assert "ua_vs_fraction.png" in fileio.listdir(root)

  ex = swept["validation"][0]
  out = fileio.join(s3_url, "pred.csv")
  assert cli.call(predict, ["--workdir", swept["workdir"], "--format=csv", f"--output={out}",
                       swept["wavs"][ex.utt_id]]) == 0
  row = next(csv.DictReader(io.StringIO(fileio.read_text(out))))
  expect = clf.predict_log_mel(ex.log_mel)
  assert row["label"] == expect.label and abs(float(row["probability"]) - expect.probability) < 1e-5
