"""The documentation names only what exists: every repository path, `python -m` module and `lanser-*` command
that README.md, benchmarks/README.md and the pages under docs/ mention, and every page of mkdocs.yml's nav; and
the built site's index page shows its title and navigation in headless Chromium."""

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOP = ("lanser_jax", "tests", "benchmarks", "launch", "docs", ".ci")
# A path under one of TOP, not itself inside a longer path or URL (`/data/lanser/...`, `gs://b/tests/...`).
PATH = re.compile(r"(?<![\w./:-])((?:%s)/[\w.*<>{}\[\]|,:=+-]*[\w/*>])" % "|".join(re.escape(t) for t in TOP))
MODULE = re.compile(r"\bpython[0-9.]* -m ([\w.]+)")
COMMAND = re.compile(r"(?<![\w./-])(lanser-[a-z][a-z0-9-]*[a-z0-9])\b")
# Modules of other projects that the docs run with `python -m`.
OTHER_MODULES = {"pip", "venv", "virtualenv", "pytest", "mkdocs"}
# Paths the docs name in other projects' repositories, each with where it lives.
EXTERNAL_PATHS = {"docs/intra-corpus.jpg": "EmoBox's repository (github.com/emo-box/EmoBox)"}
NOT_COMMANDS = {"lanser-jax"}  # the project's own name


def _doc_files() -> list[str]:
  files = [os.path.join(REPO, "README.md"), os.path.join(REPO, "benchmarks", "README.md")]
  files += sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))
  # The demo's example report is the demo's output, copied as written; its paths are a workdir's.
  return [f for f in files if os.sep + "demo_report" + os.sep not in f]


def _texts():
  for path in _doc_files():
    with open(path, encoding="utf-8") as f:
      yield os.path.relpath(path, REPO), f.read()


def _exists(path: str) -> bool:
  """Whether a path the docs name exists; `<name>` and `*` stand for any name, `{a,b}` for either."""
  path = path.split("::")[0].split("#")[0]
  path = re.sub(r"\[[^\]]*\]$", "", path)  # `iemocap.py[:fold=K]`: optional arguments
  path = re.sub(r"(\.py|\.sh|\.sbatch):.*$", r"\1", path)  # `synthetic.py:runlocal`: an experiment's arguments
  path = path.rstrip(".,:;")
  if "{" in path:
    head, alternatives, tail = re.match(r"(.*?)\{([^}]*)\}(.*)", path).groups()
    return all(_exists(head + a + tail) for a in alternatives.split(","))
  pattern = re.sub(r"<[^>]*>", "*", path)
  return bool(glob.glob(os.path.join(REPO, pattern)))


def test_every_repository_path_the_docs_name_exists():
  missing = []
  for name, text in _texts():
    for match in PATH.finditer(text):
      path = match.group(1)
      if path in EXTERNAL_PATHS:
        continue
      if not _exists(path):
        line = text.count("\n", 0, match.start()) + 1
        missing.append(f"{name}:{line}: {path}")
  assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def test_every_python_m_module_the_docs_name_exists():
  missing = []
  for name, text in _texts():
    for match in MODULE.finditer(text):
      module = match.group(1).rstrip(".")
      line = text.count("\n", 0, match.start()) + 1
      if module.split(".")[0] != "lanser_jax":
        if module not in OTHER_MODULES:
          missing.append(f"{name}:{line}: {module} (not a lanser_jax module; add it to OTHER_MODULES if meant)")
        continue
      base = os.path.join(REPO, *module.split("."))
      if not (os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__main__.py"))):
        missing.append(f"{name}:{line}: python -m {module}")
  assert not missing, "modules named in the docs that cannot run with python -m:\n" + "\n".join(missing)


def test_every_command_the_docs_name_is_an_entry_point():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    scripts = tomllib.load(f)["project"]["scripts"]
  missing = []
  for name, text in _texts():
    for match in COMMAND.finditer(text):
      command = match.group(1)
      if command not in scripts and command not in NOT_COMMANDS:
        missing.append(f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {command}")
  assert not missing, "commands named in the docs that pyproject.toml does not define:\n" + "\n".join(missing)
  # Each entry point names a module that exists, with the function it calls.
  for command, target in scripts.items():
    module, function = target.split(":")
    path = os.path.join(REPO, *module.split(".")) + ".py"
    assert os.path.isfile(path), f"{command}: {module} has no file {path}"
    with open(path, encoding="utf-8") as f:
      assert re.search(rf"^def {function}\(", f.read(), re.M), f"{command}: {module} has no function {function}"


def test_the_nav_lists_existing_pages_and_the_readme_stays_short():
  with open(os.path.join(REPO, "mkdocs.yml"), encoding="utf-8") as f:
    pages = re.findall(r"^\s+- (?:[^:\n]+: )?([\w/.-]+\.md)\s*$", f.read(), re.M)
  assert len(pages) >= 20, pages
  missing = [p for p in pages if not os.path.isfile(os.path.join(REPO, "docs", p))]
  assert not missing, f"mkdocs.yml's nav names pages that docs/ lacks: {missing}"
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    lines = f.read().count("\n")
  assert lines <= 250, f"README.md has {lines} lines; the issue allows 250: move detail into docs/"


def _mkdocs() -> list[str] | None:
  if importlib.util.find_spec("mkdocs") is not None:
    return [sys.executable, "-m", "mkdocs"]
  found = shutil.which("mkdocs")
  return [found] if found else None


def _chromium() -> str | None:
  for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
    if shutil.which(name):
      return shutil.which(name)
  return None


@pytest.mark.subprocess
def test_the_built_site_shows_its_title_and_navigation(tmp_path):
  mkdocs, chromium = _mkdocs(), _chromium()
  if mkdocs is None:
    pytest.skip("mkdocs is not installed: pip install -e '.[docs]'")
  if chromium is None:
    pytest.skip("no Chromium on PATH: apt-get install chromium (what .ci/run does where apt is available)")
  site = tmp_path / "site"
  env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
  build = subprocess.run(mkdocs + ["build", "--strict", "--site-dir", str(site)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
  assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
  index = (site / "index.html").as_uri()
  browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"]
  png = tmp_path / "index.png"
  shot = subprocess.run(browser + [f"--screenshot={png}", index], capture_output=True, text=True, timeout=120)
  assert png.is_file(), f"Chromium wrote no screenshot (exit {shot.returncode}):\n{shot.stderr[-2000:]}"
  dom = subprocess.run(browser + ["--dump-dom", index], capture_output=True, text=True, timeout=120).stdout

  # The page's text: the title and the navigation's sections and pages.
  assert "<title>lanser-jax</title>" in dom, dom[:2000]
  for label in ("Installation and versions", "Offline labelling", "Training and resume", "Design notes",
                "API reference"):
    assert label in dom, f"the navigation lacks {label!r}"

  # The picture: not blank, a coloured header band (the title), and text in the left column (the navigation).
  from PIL import Image  # matplotlib's dependency, in every install of the project
  pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
  assert pixels.shape == (1000, 1400), pixels.shape
  assert pixels.std() > 10, f"the screenshot is blank (grey-level std {pixels.std():.1f})"
  header, nav = pixels[:40], pixels[80:700, :300]
  assert header.mean() < 200, f"no coloured header band (mean grey {header.mean():.0f})"
  assert (nav < 128).mean() > 0.005, "no text in the navigation column"
