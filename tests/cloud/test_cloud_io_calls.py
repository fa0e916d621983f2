"""Library code reads and writes files only through lanser_jax.utils.fileio, so every path may be a bucket URL.

The test parses every module of lanser_jax/ and input_pipeline/ and fails on a call of `open(`,
`os.makedirs`, `os.path.exists`, `glob.glob`, `shutil.*` or `os.replace` outside fileio.py, except the
few listed below with the reason each must stay local. An exception that no longer occurs fails too, so
the list stays exact.
"""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FORBIDDEN = {"open", "os.makedirs", "os.path.exists", "glob.glob", "os.replace"}  # and shutil.*

# file -> (calls allowed there, why the paths they touch are local by nature)
EXCEPTIONS = {
    "lanser_jax/audio/decode.py": (
        {"os.path.exists", "shutil.which"},
        "decoders (libsndfile, PyAV, ffmpeg) read local files; shutil.which looks up a program, not a file"),
    "lanser_jax/config_lib.py": (
        {"os.path.exists"}, "experiment files are Python modules on the local disk (a checkout or the installed "
        "package), loaded by import"),
    "lanser_jax/demo/end_to_end.py": (
        {"os.makedirs"}, "the demo synthesises WAVs with eSpeak NG into a local folder"),
    "lanser_jax/demo/corpus.py": (
        {"open", "os.path.exists", "os.makedirs"},
        "the demo corpus: WAVs written by soundfile and their manifest, on the local disk"),
    "lanser_jax/corpora/emotion.py": (
        {"open", "os.path.exists", "os.makedirs", "glob.glob"},
        "scans a downloaded corpus (IEMOCAP, CREMA-D) on a local disk or mount, and exports TFDS clips as local "
        "WAVs with soundfile; the decoders need local paths"),
    "lanser_jax/corpora/generic.py": (
        {"open", "os.path.exists", "glob.glob"},
        "scans audio/video folders and CSV metadata on a local disk or mount for the decoders"),
    "lanser_jax/corpora/peoples_speech.py": (
        {"glob.glob"}, "finds the downloaded parquet files on a local disk or mount"),
    "lanser_jax/corpora/emobox.py": (
        {"open", "os.path.exists"},
        "reads the user's EmoBox checkout (a git clone) and checks audio files the decoders will read locally"),
    "lanser_jax/tools/emobox_check.py": (
        {"open", "os.makedirs"}, "compares the adapter with a local EmoBox checkout, writing empty stand-in audio files in a local temporary folder"),
    "lanser_jax/serving/stream.py": (
        {"os.path.exists"}, "the decoders stream local files (as lanser_jax/audio/decode.py)"),
    "lanser_jax/utils/faults.py": (
        {"shutil.disk_usage"}, "a full local disk's free space, named in the fault's line (bucket paths skip it)"),
    "lanser_jax/stages/provenance.py": (
        {"open"}, "reads /proc/cpuinfo, this machine's CPU description"),
}


def _dotted(node):
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name):
    return ".".join([node.id, *reversed(parts)])
  return None


def _calls(path):
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Call):
      name = _dotted(node.func)
      if name and (name in FORBIDDEN or name.startswith("shutil.")):
        yield node.lineno, name


def _library_files():
  for top in ("lanser_jax", "input_pipeline"):
    for d, _, files in os.walk(os.path.join(REPO, top)):
      for f in sorted(files):
        if f.endswith(".py"):
          yield os.path.relpath(os.path.join(d, f), REPO)


def test_file_operations_go_through_fileio():
  found, used = [], {k: set() for k in EXCEPTIONS}
  for rel in _library_files():
    if rel == "lanser_jax/utils/fileio.py":
      continue
    for lineno, name in _calls(os.path.join(REPO, rel)):
      if rel in EXCEPTIONS and name in EXCEPTIONS[rel][0]:
        used[rel].add(name)
      else:
        found.append(f"{rel}:{lineno}: {name}(...) -- use lanser_jax.utils.fileio")
  assert not found, "file operations outside lanser_jax.utils.fileio:\n" + "\n".join(found)
  stale = [f"{k}: {sorted(v[0] - used[k])}" for k, v in EXCEPTIONS.items() if v[0] - used[k]]
  assert not stale, "exceptions listed but no longer used (remove them):\n" + "\n".join(stale)


def test_the_check_catches_a_call(tmp_path):
  p = tmp_path / "m.py"
  p.write_text("import os, shutil\nos.makedirs('x')\nshutil.copyfile('a', 'b')\nopen('f')\nos.path.join('a')\n")
  assert [n for _, n in _calls(str(p))] == ["os.makedirs", "shutil.copyfile", "open"]
