"""Starts gcp-storage-emulator with two fixes to object downloads: `x-goog-generation`, and suffix ranges.

Google Cloud Storage sends the object's generation as an `x-goog-generation` header on every media
download; TensorStore (Orbax's array writer) reads it to version the OCDBT manifest it updates, and stops
with "Malformed StorageGeneration" without it. gcp-storage-emulator 2026.7 omits the header (it has the
value: the generation of its object metadata), so this launcher adds it. And it answers a suffix range
(`Range: bytes=-N`, the last N bytes, standard HTTP that GCS serves) with the whole object; ArrayRecord's
GCS reader asks for the last 1 MiB to find a shard's footer, so shards over 1 MiB would read as corrupt.
The launcher turns a suffix range into the equivalent `bytes=START-` and leaves everything else as is.
Used by tests/storage_servers.py as `python tests/gcs_emulator.py start --host=... --port=...`.
"""

import re
import sys

from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
  except Exception:  # noqa: BLE001 -- not found: the original handler answers that
    return _download(request, response, storage, *args, **kwargs)
  headers = request._request_handler.headers
  m = re.fullmatch(r"\s*bytes=-(\d+)\s*", headers.get("range", "") or "")
  if m:
    size = int(obj["size"])
    del headers["range"]
    headers["Range"] = f"bytes={max(0, size - int(m[1]))}-"
  _download(request, response, storage, *args, **kwargs)
  response["x-goog-generation"] = str(obj["generation"])
  response["x-goog-metageneration"] = str(obj["metageneration"])


objects.download = download  # before the server module builds its routing table from it

from gcp_storage_emulator.__main__ import main  # noqa: E402

if __name__ == "__main__":
  sys.exit(main())
