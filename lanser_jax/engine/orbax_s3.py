"""Teaches Orbax 0.12's TensorStore spec builder to write and read checkpoint arrays at `s3://` URLs.

Why this exists. Orbax writes every array through TensorStore, and builds the TensorStore kvstore spec in
`orbax/checkpoint/_src/serialization/tensorstore_utils.py`. In Orbax 0.12.8 that builder knows two kinds of
path: local (TensorStore's `file` driver) and `gs://` (`gcs`): `_use_gcs_driver` says yes for `gs://` only,
`_normalize_path` runs `os.path.normpath`, which turns `s3://b/x` into `s3:/b/x` and puts back the double
slash for `gs:/` only, and then `_build_ocdbt_kvstore_tspec` refuses the path ("Checkpoint path should be
absolute") while `_build_non_ocdbt_kvstore_tspec` makes a `file` spec for the relative path `s3:/b/x`, a
folder on the local disk. Orbax offers no option to supply a spec instead. TensorStore itself has an `s3`
kvstore driver; Orbax never asks for it. Upstream Orbax has no s3 support in this version, so this module
adds it, by replacing three private functions with wrappers that handle `s3://` and hand every other path
to the original unchanged:

- `tensorstore_utils._normalize_path`: an `s3://` path keeps its `s3://` (the rest is normalised as Orbax
  does), so the bucket survives;
- `tensorstore_utils._use_gcs_driver`: also true for `s3://`. In both builders this flag means "an object
  store URL": skip the absolute-path check, and take the base spec from `gcs_utils.get_kvstore_for_gcs`;
- `gcs_utils.get_kvstore_for_gcs`: for `s3://bucket/key` returns `{"driver": "s3", "bucket": ..., "path":
  key}` (the same shape as Orbax's `gcs` spec: no trailing slash), plus where to reach S3 (below).

Local and `gs://` paths never reach the new code: each wrapper calls Orbax's own function for them, so their
specs stay exactly what Orbax builds (tests/engine/test_orbax_s3.py compares them). With an `s3` base spec the rest
of Orbax's builder runs as for `gs://`: OCDBT (Orbax's default format), per-process OCDBT folders merged by
the primary host, read coalescing (Orbax's `is_remote_storage` already lists the `s3` driver), and the
non-OCDBT `_sharding` file.

Where S3 is. TensorStore's `s3` driver does not read `AWS_ENDPOINT_URL` (checked with TensorStore 0.1.86:
with only the variable set it went to AWS and timed out), so the spec gets `endpoint` from the standard
variables botocore also reads, `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, and with an endpoint,
`aws_region` from `AWS_REGION`, else `AWS_DEFAULT_REGION` (when neither is set TensorStore asks the endpoint
for the bucket's region). Without an endpoint (AWS itself) no region is put in the spec: TensorStore looks
up the bucket's own region, which a default region meant for other services cannot contradict. The spec is
built from the environment at each call and lives only in memory: Orbax stores no kvstore spec in the
checkpoint. Credentials are never in it: TensorStore's AWS client reads them itself from the standard
environment (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `AWS_PROFILE` and the shared
files, container or instance metadata).

`install()` is called by `lanser_jax.engine.checkpointing` when a checkpoint path is an `s3://` URL, and only
then; it is idempotent. It first checks that the three functions exist with the parameters they are wrapped
for and that both builders still call them, and fails with a message naming the Orbax version otherwise
(a later Orbax may have moved them, or may support S3 itself). It fits Orbax 0.12.8; the earlier 0.12
wheels looked at (0.12.0, 0.12.4 to 0.12.7) test `startswith('gs://')` inline and are refused.
"""

from __future__ import annotations

import inspect
import os
import threading
from typing import Any

_PREFIX = "s3://"
_lock = threading.Lock()
_installed = False


class OrbaxS3Error(RuntimeError):
  """This Orbax is not the one the adapter was written for: s3:// checkpoints cannot be enabled."""


def _modules():
  from orbax.checkpoint._src.path import gcs_utils
  from orbax.checkpoint._src.serialization import tensorstore_utils
  return tensorstore_utils, gcs_utils


def _orbax_version() -> str:
  try:
    import orbax.checkpoint as ocp
    return str(getattr(ocp, "__version__", "unknown"))
  except Exception:  # noqa: BLE001 -- only for the message
    return "unknown"


def s3_kvstore_spec(url: str) -> dict[str, Any]:
  """TensorStore's `s3` kvstore spec for `s3://bucket/key`, with endpoint and region from the environment."""
  bucket, _, key = url[len(_PREFIX):].partition("/")
  if not bucket:
    raise ValueError(f"{url}: an s3:// checkpoint path needs a bucket name (s3://BUCKET/PATH)")
  spec: dict[str, Any] = {"driver": "s3", "bucket": bucket, "path": key}
  endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
  if endpoint:
    spec["endpoint"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
      spec["aws_region"] = region
  return spec


def _wrap(ts_utils, gcs_utils):
  original_normalize = ts_utils._normalize_path
  original_use_gcs = ts_utils._use_gcs_driver
  original_kvstore = gcs_utils.get_kvstore_for_gcs

  def _normalize_path(path: str) -> str:
    if isinstance(path, str) and path.startswith(_PREFIX):
      return _PREFIX + os.path.normpath(path[len(_PREFIX):])
    return original_normalize(path)

  def _use_gcs_driver(directory: str) -> bool:
    if isinstance(directory, str) and directory.startswith(_PREFIX):
      return True
    return original_use_gcs(directory)

  def get_kvstore_for_gcs(ckpt_path: str) -> dict[str, Any]:
    if isinstance(ckpt_path, str) and ckpt_path.startswith(_PREFIX):
      return s3_kvstore_spec(ckpt_path)
    return original_kvstore(ckpt_path)

  for new, old in ((_normalize_path, original_normalize), (_use_gcs_driver, original_use_gcs),
                   (get_kvstore_for_gcs, original_kvstore)):
    new.__wrapped__ = old  # what was replaced, for inspection and for the tests
    new.__doc__ = f"lanser_jax.engine.orbax_s3: s3:// handled here, every other path by Orbax's own {old.__name__}."
    new._lanser_orbax_s3 = True
  return _normalize_path, _use_gcs_driver, get_kvstore_for_gcs


# What is wrapped, with the parameters the wrappers take, and the builders that must call them.
_EXPECTED = (("tensorstore_utils", "_normalize_path", ["path"]),
             ("tensorstore_utils", "_use_gcs_driver", ["directory"]),
             ("gcs_utils", "get_kvstore_for_gcs", ["ckpt_path"]))
_BUILDERS = ("_build_ocdbt_kvstore_tspec", "_build_non_ocdbt_kvstore_tspec")
_CALLED = {"_normalize_path", "_use_gcs_driver", "gcs_utils", "get_kvstore_for_gcs"}


def _check(ts_utils, gcs_utils):
  """Raises OrbaxS3Error unless this Orbax has the functions, parameters and calls the wrappers assume."""
  modules = {"tensorstore_utils": ts_utils, "gcs_utils": gcs_utils}
  problems = []
  for module, name, params in _EXPECTED:
    fn = getattr(modules[module], name, None)
    if fn is None:
      problems.append(f"{module}.{name} is missing")
      continue
    fn = getattr(fn, "__wrapped__", fn) if getattr(fn, "_lanser_orbax_s3", False) else fn
    got = list(inspect.signature(fn).parameters)
    if got != params:
      problems.append(f"{module}.{name} takes {got}, not {params}")
  for name in _BUILDERS:
    fn = getattr(ts_utils, name, None)
    code = getattr(fn, "__code__", None)
    if code is None:
      problems.append(f"tensorstore_utils.{name} is missing")
    elif not _CALLED <= set(code.co_names):
      problems.append(f"tensorstore_utils.{name} no longer calls {sorted(_CALLED - set(code.co_names))}")
  if problems:
    raise OrbaxS3Error(
        f"s3:// checkpoints: lanser_jax/engine/orbax_s3.py adds S3 to the TensorStore spec builder of Orbax 0.12.8, "
        f"but the installed Orbax {_orbax_version()} differs: " + "; ".join(problems) + ". Install "
        "orbax-checkpoint 0.12.8 (or check whether this Orbax supports s3:// itself and update the adapter), "
        "or mount the bucket (mountpoint-s3, s3fs-fuse) and use the mounted folder as the path.")


def install():
  """Enables `s3://` checkpoint paths in this process's Orbax (once; later calls return at once)."""
  global _installed
  with _lock:
    if _installed:
      return
    ts_utils, gcs_utils = _modules()
    _check(ts_utils, gcs_utils)
    normalize, use_gcs, kvstore = _wrap(ts_utils, gcs_utils)
    ts_utils._normalize_path, ts_utils._use_gcs_driver, gcs_utils.get_kvstore_for_gcs = \
        normalize, use_gcs, kvstore
    # The builders now reach the s3 driver (a spec is only built here, nothing is opened); if not, put
    # Orbax's functions back and say so.
    probe = ts_utils.build_kvstore_tspec("s3://bucket-probe/x/y", "a", use_ocdbt=True)
    if probe.get("base", {}).get("driver") != "s3":
      ts_utils._normalize_path, ts_utils._use_gcs_driver, gcs_utils.get_kvstore_for_gcs = (
          normalize.__wrapped__, use_gcs.__wrapped__, kvstore.__wrapped__)
      raise OrbaxS3Error(f"s3:// checkpoints: with the adapter installed Orbax {_orbax_version()} still "
                         f"builds {probe} for an s3:// path; the adapter does not fit this Orbax")
    _installed = True


def installed() -> bool:
  return _installed
