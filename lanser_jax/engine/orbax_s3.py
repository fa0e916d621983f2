"""Teaches Orbax 0.12's TensorStore spec builder to write and read checkpoint arrays at `s3://` URLs.

Orbax 0.12.8 builds TensorStore specs for local paths and `gs://` only (an `s3://` path becomes a local folder
or is refused), though TensorStore has an `s3` driver. `install()` wraps three private Orbax functions,
`tensorstore_utils._normalize_path`, `tensorstore_utils._use_gcs_driver` and `gcs_utils.get_kvstore_for_gcs`,
so that an `s3://` path gets an `s3` kvstore spec (endpoint and region from the standard AWS variables, never
credentials) and every other path goes to Orbax's own function unchanged. `lanser_jax.engine.checkpointing`
calls it only for `s3://` checkpoint paths; it checks the wrapped functions' signatures first and refuses
another Orbax with its version named. Why and how, in full: docs/design_notes.md ("s3:// checkpoints and
Orbax's spec builder").
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
