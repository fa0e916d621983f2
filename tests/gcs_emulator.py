"""Starts gcp-storage-emulator with one fix: object downloads carry `x-goog-generation`.

Google Cloud Storage sends the object's generation as an `x-goog-generation` header on every media
download; TensorStore (Orbax's array writer) reads it to version the OCDBT manifest it updates, and stops
with "Malformed StorageGeneration" without it. gcp-storage-emulator 2026.7 omits the header (it has the
value: the generation of its object metadata), so this launcher adds it and leaves everything else as is.
Used by tests/storage_servers.py as `python tests/gcs_emulator.py start --host=... --port=...`.
"""

import sys

from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
  _download(request, response, storage, *args, **kwargs)
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
  except Exception:  # noqa: BLE001 -- not found: the original handler has answered already
    return
  response["x-goog-generation"] = str(obj["generation"])
  response["x-goog-metageneration"] = str(obj["metageneration"])


objects.download = download  # before the server module builds its routing table from it

from gcp_storage_emulator.__main__ import main  # noqa: E402

if __name__ == "__main__":
  sys.exit(main())
