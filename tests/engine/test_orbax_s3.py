"""lanser_jax.engine.orbax_s3, the adapter that gives Orbax 0.12's TensorStore spec builder the s3 driver: local and
gs:// specs stay exactly Orbax's, s3:// specs point at the bucket with endpoint and region from the standard
environment, and an Orbax whose private functions differ is refused with its version named. No server is
needed: only specs are built (tests/cloud/test_cloud_train.py writes and reads checkpoints on moto's S3 server)."""

import types

import pytest
from orbax.checkpoint._src.path import gcs_utils
from orbax.checkpoint._src.serialization import tensorstore_utils as ts_utils

from lanser_jax.engine import orbax_s3

AWS_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")
PATHS = ("/tmp/run/checkpoints/5/state", "/tmp/run/checkpoints/5/state/", "gs://some-bucket/run/5/state",
         "gs://some-bucket/run//5/./state/")


def _specs():
  """What Orbax builds for local and gs:// paths, in each form the checkpointers ask for."""
  process = ts_utils.OcdbtProcessSpec(process_id="0")
  out = []
  for path in PATHS:
    out.append(ts_utils.build_kvstore_tspec(path, "params.w", use_ocdbt=False))
    out.append(ts_utils.build_kvstore_tspec(path, use_ocdbt=True))
    out.append(ts_utils.build_kvstore_tspec(
        path, "params.w", use_ocdbt=True, ocdbt_process_spec=process,
        ocdbt_write_options=ts_utils.OcdbtKvStoreWriteOptions(mode=ts_utils.OcdbtWriteMode.WRITE)))
    out.append(ts_utils.get_sharding_tensorstore_spec(path, "params.w"))
  return out


@pytest.fixture
def clean_env(monkeypatch):
  for k in AWS_VARS:
    monkeypatch.delenv(k, raising=False)
  return monkeypatch


def test_local_and_gs_specs_unchanged_and_install_idempotent(clean_env):
  names = ((ts_utils, "_normalize_path"), (ts_utils, "_use_gcs_driver"), (gcs_utils, "get_kvstore_for_gcs"))
  originals = [getattr(getattr(m, n), "__wrapped__", getattr(m, n)) for m, n in names]
  with pytest.MonkeyPatch.context() as orbax_own:  # installed already if another test used s3:// before
    for (module, name), fn in zip(names, originals):
      orbax_own.setattr(module, name, fn)
    before = _specs()
  orbax_s3.install()
  replaced = [getattr(m, n) for m, n in names]
  orbax_s3.install()  # a second call changes nothing
  assert [getattr(m, n) for m, n in names] == replaced
  assert [f.__wrapped__ for f in replaced] == originals
  assert _specs() == before
  # With the S3 variables set, too: they concern s3:// only.
  clean_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
  clean_env.setenv("AWS_REGION", "eu-west-1")
  assert _specs() == before


def test_s3_specs(clean_env):
  orbax_s3.install()
  url = "s3://my-bucket/runs/x/checkpoints/5/state/"
  base = {"driver": "s3", "bucket": "my-bucket", "path": "runs/x/checkpoints/5/state"}
  # AWS itself: no endpoint, and no region (TensorStore looks up the bucket's own region).
  clean_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
  assert ts_utils.build_kvstore_tspec(url, "params.w", use_ocdbt=False) == {
      **base, "path": base["path"] + "/params.w"}
  ocdbt = ts_utils.build_kvstore_tspec(url, "params.w", use_ocdbt=True)
  assert ocdbt["driver"] == "ocdbt" and ocdbt["base"] == base and ocdbt["path"] == "params.w"
  assert ocdbt["experimental_read_coalescing_threshold_bytes"] > 0  # Orbax's remote-storage settings
  # A server of one's own: endpoint from AWS_ENDPOINT_URL_S3 before AWS_ENDPOINT_URL, region AWS_REGION
  # before AWS_DEFAULT_REGION.
  clean_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
  assert orbax_s3.s3_kvstore_spec(url.rstrip("/")) == {**base, "endpoint": "http://127.0.0.1:9000",
                                                       "aws_region": "eu-west-1"}
  clean_env.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9001")
  clean_env.setenv("AWS_REGION", "us-east-2")
  per_process = ts_utils.build_kvstore_tspec(
      url, use_ocdbt=True, ocdbt_process_spec=ts_utils.OcdbtProcessSpec(process_id="3"),
      ocdbt_write_options=ts_utils.OcdbtKvStoreWriteOptions(mode=ts_utils.OcdbtWriteMode.WRITE))
  assert per_process["base"] == {**base, "path": base["path"] + "/ocdbt.process_3",
                                 "endpoint": "http://127.0.0.1:9001", "aws_region": "us-east-2"}
  spec = repr(per_process)
  for secret in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
    assert secret not in spec
  with pytest.raises(ValueError, match="needs a bucket name"):
    orbax_s3.s3_kvstore_spec("s3:///x")


def test_refuses_an_orbax_it_does_not_fit():
  def normalize(path):
    return path

  def use_gcs(directory, extra):
    return False

  def builder(directory):
    return _normalize_path(directory)  # noqa: F821 -- only its bytecode's names are read

  fake_ts = types.SimpleNamespace(_normalize_path=normalize, _use_gcs_driver=use_gcs,
                                  _build_ocdbt_kvstore_tspec=builder)
  fake_gcs = types.SimpleNamespace()
  with pytest.raises(orbax_s3.OrbaxS3Error) as e:
    orbax_s3._check(fake_ts, fake_gcs)
  msg = str(e.value)
  import orbax.checkpoint as ocp
  assert f"Orbax {ocp.__version__} differs" in msg and "0.12.8" in msg
  assert "_use_gcs_driver takes ['directory', 'extra']" in msg
  assert "gcs_utils.get_kvstore_for_gcs is missing" in msg
  assert "_build_non_ocdbt_kvstore_tspec is missing" in msg
  assert "_build_ocdbt_kvstore_tspec no longer calls ['_use_gcs_driver', 'gcs_utils', 'get_kvstore_for_gcs']" \
      in msg
  assert "mount the bucket" in msg
  orbax_s3._check(ts_utils, gcs_utils)  # the installed Orbax fits
