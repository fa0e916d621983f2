"""Real storage servers for the tests: a GCS emulator (gcp-storage-emulator, through tests/gcs_emulator.py,
which adds the generation header GCS sends on downloads) and an S3 server (moto in server mode), each
started on a free 127.0.0.1 port for the test session and stopped after it.

The fixtures set the standard variables that point every client at them, and restore the environment
afterwards: `STORAGE_EMULATOR_HOST` (google-cloud-storage, gcsfs), `TENSORSTORE_GCS_HTTP_URL` (TensorStore,
Orbax's array writer), `CLOUD_STORAGE_EMULATOR_ENDPOINT` (ArrayRecord's C++ GCS reader), and
`AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION` and dummy `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (s3fs via
botocore; TensorStore's s3 driver gets the endpoint and region through lanser_jax/engine/orbax_s3.py and reads the
keys itself). Subprocesses started by a test inherit them.

A missing server package skips the cloud tests on a developer's machine, but fails them in CI (`CI` set to
true), where `.ci/run` installs the `test` extra and they must run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

GCS_BUCKET = "lanser-test"
S3_BUCKET = "lanser-test-s3"


def _in_ci() -> bool:
  return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _executable(name: str) -> str:
  """The server's script beside this Python (the venv), else on PATH; skip or fail when absent."""
  here = os.path.join(os.path.dirname(sys.executable), name)
  path = here if os.path.exists(here) else shutil.which(name)
  if path is None:
    msg = f"{name} is not installed (pip install 'lanser-jax[test,cloud]')"
    if _in_ci():
      pytest.fail(f"{msg}: in CI the storage tests must run")
    pytest.skip(msg)
  return path


def _need_module(name: str):
  if importlib.util.find_spec(name) is None:  # not imported: gcsfs reads its settings at import
    msg = f"python package {name} is not installed (pip install 'lanser-jax[cloud]')"
    if _in_ci():
      pytest.fail(f"{msg}: in CI the storage tests must run")
    pytest.skip(msg)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Server:
  """One server process, its endpoint and its log."""

  def __init__(self, name: str, argv: list[str], url: str, probe: str, log_path: str):
    self.name, self.url = name, url
    self._log = open(log_path, "wb")
    self.log_path = log_path
    self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
      try:
        urllib.request.urlopen(url + probe, timeout=2).read()
        return
      except Exception:  # noqa: BLE001 -- not up yet
        if self.proc.poll() is not None or time.time() > deadline:
          self.stop()
          with open(log_path, errors="replace") as f:
            tail = f.read()[-2000:]
          raise RuntimeError(f"{name} did not start on {url} (exit {self.proc.returncode}):\n{tail}")
        time.sleep(0.2)

  def stop(self):
    if self.proc.poll() is None:
      self.proc.terminate()
      try:
        self.proc.wait(10)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    self._log.close()


class _Env:
  """Sets variables and puts the old values back."""

  def __init__(self, values: dict[str, str]):
    self.old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)

  def restore(self):
    for k, v in self.old.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
  """The GCS emulator with bucket GCS_BUCKET; yields its endpoint URL."""
  _executable("gcp-storage-emulator")  # installed (the launcher below imports its package)
  _need_module("gcsfs")
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  server = Server("gcp-storage-emulator",
                  [sys.executable, os.path.join(os.path.dirname(__file__), "gcs_emulator.py"), "start",
                   "--host=127.0.0.1", f"--port={port}", "--in-memory",
                   f"--default-bucket={GCS_BUCKET}", "--quiet"],
                  url, f"/storage/v1/b/{GCS_BUCKET}", str(tmp_path_factory.mktemp("gcs") / "server.log"))
  env = _Env({"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
              "CLOUD_STORAGE_EMULATOR_ENDPOINT": url, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
              "EPATH_USE_TF": "false"})
  yield url
  env.restore()
  server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
  """moto's S3 server with bucket S3_BUCKET; yields its endpoint URL."""
  exe = _executable("moto_server")
  _need_module("s3fs")
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  server = Server("moto_server", [exe, "-H", "127.0.0.1", "-p", str(port)], url, "/",
                  str(tmp_path_factory.mktemp("s3") / "server.log"))
  env = _Env({"AWS_ENDPOINT_URL": url, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
              "AWS_SECRET_ACCESS_KEY": "testing", "EPATH_USE_TF": "false"})
  from lanser_jax.utils import fileio
  fileio.fs(f"s3://{S3_BUCKET}").mkdir(S3_BUCKET)
  yield url
  env.restore()
  server.stop()


@pytest.fixture
def gcs_url(gcs_server):
  """A fresh prefix in the emulator's bucket: gs://lanser-test/<random>."""
  return f"gs://{GCS_BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_url(s3_server):
  return f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["gs", "s3"])
def bucket_url(request):
  """A fresh prefix on each of the two servers in turn."""
  return request.getfixturevalue({"gs": "gcs_url", "s3": "s3_url"}[request.param])


class FaultProxy:
  """An HTTP proxy on 127.0.0.1 in front of a storage server that answers `status` instead of forwarding the
  first `times` requests whose path matches `pattern` (a storage error injected for one request); every
  other request goes through unchanged. `injected` lists the paths it failed."""

  def __init__(self, upstream: str, pattern: str, status: int = 503, times: int = 1):
    import http.server
    import re
    import threading
    import urllib.error
    self.injected: list[str] = []
    proxy, regex, lock = self, re.compile(pattern), threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.1"

      def _relay(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with lock:
          fail = regex.search(self.path) is not None and len(proxy.injected) < times
          if fail:
            proxy.injected.append(self.path)
        if fail:
          self._answer(status, {"Content-Type": "application/json"},
                       b'{"error": {"code": %d, "message": "injected by the test"}}' % status)
          return
        request = urllib.request.Request(upstream + self.path, data=body or None, method=self.command,
                                         headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        try:
          with urllib.request.urlopen(request, timeout=60) as r:
            self._answer(r.status, dict(r.headers.items()), r.read())
        except urllib.error.HTTPError as e:
          self._answer(e.code, dict(e.headers.items()), e.read())

      def _answer(self, code, headers, payload):
        self.send_response(code)
        for k, v in headers.items():
          if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
          self.wfile.write(payload)

      do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _relay

      def log_message(self, *args):
        pass

    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.server.server_port}"
    threading.Thread(target=self.server.serve_forever, daemon=True).start()

  def stop(self):
    self.server.shutdown()
    self.server.server_close()
