"""Feature-shard read speed: local disk vs gs:// through ArrayRecord's own GCS reader, on a GCS emulator.

  python benchmarks/cloud_read.py [--records=2000] [--out=build/bench_cloud_read.json]

Starts gcp-storage-emulator on a free 127.0.0.1 port (tests/gcs_emulator.py), writes one synthetic split
locally and to the bucket, and reads every record through Grain's ArrayRecord source from each. The emulator
is a single-threaded Python server, so the gs:// figure is a lower bound on what the same client does
against GCS; it shows the per-record request cost, not GCS throughput.
"""

import argparse
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]


def _read_all(data_dir):
  from lanser_jax.input_pipeline import pipeline
  src = pipeline.open_source(data_dir, "train")
  t = time.perf_counter()
  n_bytes = sum(len(src[i]) for i in range(len(src)))
  return len(src), n_bytes, time.perf_counter() - t


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--records", type=int, default=2000)
  p.add_argument("--out", default=os.path.join(REPO, "build", "bench_cloud_read.json"))
  a = p.parse_args()
  import storage_servers
  port = storage_servers._free_port()
  url = f"http://127.0.0.1:{port}"
  log = os.path.join(tempfile.mkdtemp(), "gcs.log")
  server = storage_servers.Server(
      "gcp-storage-emulator", [sys.executable, os.path.join(REPO, "tests", "gcs_emulator.py"), "start",
                               "--host=127.0.0.1", f"--port={port}", "--in-memory", "--default-bucket=bench",
                               "--quiet"], url, "/storage/v1/b/bench", log)
  os.environ.update(STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url, CLOUD_STORAGE_EMULATOR_ENDPOINT=url,
                    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")
  try:
    from lanser_jax.input_pipeline import synthetic
    local = tempfile.mkdtemp()
    kw = dict(num_classes=4, mel_bins=64, num_train=a.records, num_eval=8, min_frames=100, max_frames=300,
              num_shards=4, seed=0)
    synthetic.write_synthetic(local, **kw)
    synthetic.write_synthetic("gs://bench/features", **kw)
    result = {}
    for name, d in (("local", local), ("gs_emulator", "gs://bench/features")):
      n, n_bytes, s = _read_all(d)
      result[name] = {"records": n, "MB": n_bytes / 1e6, "seconds": s, "records_per_s": n / s}
      print(f"{name:12s} {n} records, {n_bytes / 1e6:.1f} MB in {s:.2f} s: {n / s:.0f} records/s")
  finally:
    server.stop()
  os.makedirs(os.path.dirname(a.out), exist_ok=True)
  with open(a.out, "w") as f:
    json.dump(result, f, indent=1)
  print("wrote", a.out)


if __name__ == "__main__":
  main()
