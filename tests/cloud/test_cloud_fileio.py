"""lanser_jax.utils.fileio on a local disk, the GCS emulator and the S3 server: the same calls, the same results."""

import os
import time

import pytest

from lanser_jax.utils import fileio


@pytest.fixture(params=["local", pytest.param("gs", marks=pytest.mark.cloud),
                        pytest.param("s3", marks=pytest.mark.cloud)])
def root(request, tmp_path):
  if request.param == "local":
    return str(tmp_path / "root")
  return request.getfixturevalue({"gs": "gcs_url", "s3": "s3_url"}[request.param])


def test_read_write_list_copy_delete(root, tmp_path):
  a = fileio.join(root, "sub", "a.txt")
  fileio.makedirs(fileio.join(root, "sub"))
  fileio.write_text(a, "héllo\n")
  fileio.write_bytes(fileio.join(root, "sub", "b.bin"), b"\x00\x01")
  fileio.write_json(fileio.join(root, "c.json"), {"x": [1, 2]})
  assert fileio.read_text(a) == "héllo\n"
  assert fileio.read_bytes(fileio.join(root, "sub", "b.bin")) == b"\x00\x01"
  assert fileio.read_json(fileio.join(root, "c.json")) == {"x": [1, 2]}
  assert fileio.exists(a) and fileio.isfile(a) and not fileio.exists(fileio.join(root, "nope"))
  assert fileio.isdir(fileio.join(root, "sub"))
  assert fileio.getsize(fileio.join(root, "sub", "b.bin")) == 2
  assert fileio.glob(fileio.join(root, "sub", "*.txt")) == [a]
  assert fileio.listdir(fileio.join(root, "sub")) == ["a.txt", "b.bin"]
  assert fileio.listdir(fileio.join(root, "missing")) == []
  assert fileio.walk_files(root) == sorted([a, fileio.join(root, "sub", "b.bin"), fileio.join(root, "c.json")])
  with fileio.open(a) as f:
    assert f.read() == "héllo\n"

  # Copies in every direction between this store and the local disk.
  local = str(tmp_path / "copy" / "a.txt")
  fileio.copy(a, local)
  assert open(local, encoding="utf-8").read() == "héllo\n"
  fileio.copy(local, fileio.join(root, "back.txt"))
  fileio.copy(fileio.join(root, "back.txt"), fileio.join(root, "again.txt"))
  assert fileio.read_text(fileio.join(root, "again.txt")) == "héllo\n"
  fileio.copy_tree(fileio.join(root, "sub"), fileio.join(root, "tree"))
  assert fileio.listdir(fileio.join(root, "tree")) == ["a.txt", "b.bin"]

  fileio.rename(fileio.join(root, "again.txt"), fileio.join(root, "moved.txt"))
  assert not fileio.exists(fileio.join(root, "again.txt"))
  assert fileio.read_text(fileio.join(root, "moved.txt")) == "héllo\n"
  fileio.remove(fileio.join(root, "moved.txt"))
  fileio.remove(fileio.join(root, "moved.txt"))  # missing_ok
  with pytest.raises(FileNotFoundError):
    fileio.remove(fileio.join(root, "moved.txt"), missing_ok=False)
  fileio.rmtree(fileio.join(root, "tree"))
  assert not fileio.exists(fileio.join(root, "tree", "a.txt"))


def test_atomic_write_leaves_nothing_on_error(root):
  path = fileio.join(root, "piece.jsonl")
  with pytest.raises(RuntimeError):
    with fileio.atomic_write(path) as f:
      f.write("half a line")
      raise RuntimeError("killed mid-write")
  assert not fileio.exists(path)
  assert [p for p in fileio.walk_files(root) if "piece" in p] == []  # no temporary file left either
  with fileio.atomic_write(path) as f:
    f.write('{"a": 1}\n')
  assert fileio.read_jsonl(path) == [{"a": 1}]


def test_append_file_keeps_earlier_lines(root):
  path = fileio.join(root, "metrics.jsonl")
  fileio.append_jsonl(path, [{"step": 1}])
  f = fileio.AppendFile(path)  # a resumed writer continues the same file
  f.write('{"step": 2}\n')
  f.flush()
  assert fileio.read_jsonl(path) == [{"step": 1}, {"step": 2}]
  f.write('{"step": 3}\n')
  f.close()
  assert fileio.read_jsonl(path) == [{"step": 1}, {"step": 2}, {"step": 3}]


def test_urls_are_never_made_local(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert fileio.absolute("gs://b/x") == "gs://b/x"
  assert fileio.absolute("s3://b/x") == "s3://b/x"
  assert fileio.absolute("x") == str(tmp_path / "x")
  assert fileio.is_url("gs://b/x") and not fileio.is_url("/gs/b") and not fileio.is_url("gs:/b")
  fileio.makedirs("gs://b/x")  # no folders on object stores: nothing to create, and nothing locally
  assert os.listdir(tmp_path) == []
  with pytest.raises(ValueError, match="cannot be appended"):
    fileio.open("gs://b/x.jsonl", "a")


@pytest.mark.cloud
def test_emulator_bucket_is_fast(gcs_url):
  """gcsfs's gRPC bucket-type probe (60 s per bucket against an emulator) is off when an emulator is set."""
  t = time.time()
  fileio.write_text(fileio.join(gcs_url, "x"), "1")
  assert fileio.exists(fileio.join(gcs_url, "x"))
  assert time.time() - t < 30
