"""The Ray runner (lanser_jax/stages/ray_runner.py) on a real local Ray: the same bytes as the local runner for
the stage digest's runs (tests/stage_digest.py), complete pieces skipped on a rerun, one progress line for the
job, its config checks, the command line (starting its own Ray, and joining a cluster it did not start), and the
one line when Ray is not installed."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from ray_helpers import ray_session  # noqa: F401  (fixture)
from stage_helpers import FakeLabeler, FakeTranscriber, make_bad_folder, run_all, small_config, tree_bytes
from lanser_jax.stages import chain, defaults, pieces

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_without_ray_the_runner_says_how_to_install_it(monkeypatch):
  from lanser_jax.stages import ray_runner
  monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
  with pytest.raises(ray_runner.RayMissing) as e:
    ray_runner.import_ray()
  assert str(e.value) == ("--runner=ray needs Ray, which is not installed: pip install 'lanser-jax[ray]' (or run "
                          "with --runner=local)")


def test_only_the_ray_runner_imports_ray():
  importers = []
  for folder, _, files in os.walk(os.path.join(ROOT, "lanser_jax")):
    for name in (n for n in files if n.endswith(".py")):
      with open(os.path.join(folder, name)) as f:
        text = f.read()
      if re.search(r"^\s*(import ray\b|from ray\b)", text, re.M):
        importers.append(os.path.relpath(os.path.join(folder, name), ROOT))
  assert importers == ["lanser_jax/stages/ray_runner.py"]


def test_actors_that_cannot_all_be_placed_are_refused_on_a_local_ray():
  from lanser_jax.stages import ray_runner
  c = defaults.default_config()
  c.ray.asr.num_actors, c.ray.asr.num_gpus = 2, 1.0
  c.ray.label.resources.TPU = 4.0
  assert ray_runner.needed_resources(c, ["asr", "label", "features"]) == {"CPU": 3.0, "GPU": 2.0, "TPU": 4.0}
  with pytest.raises(ValueError, match=r"need more than the cluster has \(CPU 3 > 2, GPU 2 > 0, TPU 4 > 0\)"):
    ray_runner.check_resources(c, ["asr", "label", "features"], {"CPU": 2.0}, local=True)
  said = []
  ray_runner.check_resources(c, ["asr"], {"CPU": 2.0}, local=False, log=said.append)  # a cluster may grow
  assert said and said[0].startswith("warning: the Ray actors of stages ['asr'] need more")
  c.ray.max_retries = -1
  with pytest.raises(Exception, match=r"config.ray.max_retries=-1"):
    defaults.check(c)


def _runs(root):
  """The stage digest's runs: weak labels over 3 pieces and over 4 (two ASR actors), features only over 2."""
  for name, num_pieces, label_source in (("weak3", 3, "weak"), ("weak4", 4, "weak"), ("none", 2, "none")):
    c = small_config(root, num_pieces)
    if label_source != "weak":
      c.features.label_source, c.stages = label_source, ("manifest", "features")
    if name == "weak4":
      c.ray.asr.num_actors, c.ray.asr.num_cpus = 2, 0.5
    yield name, c


@pytest.mark.slow
@pytest.mark.subprocess
def test_ray_writes_the_local_runners_bytes_and_skips_complete_pieces(tmp_path, ray_session, capsys):  # noqa: F811
  from lanser_jax.stages import ray_runner
  root = str(tmp_path / "corpus")
  make_bad_folder(root)
  for name, c in _runs(root):
    local, on_ray = str(tmp_path / f"{name}_local"), str(tmp_path / f"{name}_ray")
    expected = run_all(c, local)
    summary = ray_runner.run(c, on_ray, "all", labeler=FakeLabeler(), transcriber=FakeTranscriber())
    assert summary == expected, name
    want, got = tree_bytes(local), tree_bytes(on_ray)
    assert sorted(got) == sorted(want), name
    assert [p for p in want if got[p] != want[p]] == [], name
  err = capsys.readouterr().err
  # One line for the whole job: utterances and pieces through every stage, rate (and ETA while running).
  assert re.search(r"^\[ray\] 11/11 \(100\.0%\) utterances, [\d.]+/s, elapsed 0:\d\d:\d\d; pieces 4/4 "
                   r"\(asr 4, label 4, features 4\)$", err, re.M), err[-3000:]

  # A rerun does nothing; a piece whose summary is gone is done again, alone, with the same bytes.
  c = dict(_runs(root))["weak4"]
  on_ray = str(tmp_path / "weak4_ray")
  before = {p: os.stat(os.path.join(on_ray, p)).st_mtime_ns for p in tree_bytes(on_ray)}
  ray_runner.run(c, on_ray, "all", labeler=FakeLabeler(), transcriber=FakeTranscriber())
  assert "[ray] 4 of 4 pieces are complete through ['asr', 'label', 'features']: skipped" in capsys.readouterr().err
  pieced = [p for p in before if re.search(r"-\d{5}-of-\d{5}\.", p)]
  assert pieced and all(os.stat(os.path.join(on_ray, p)).st_mtime_ns == before[p] for p in pieced)
  os.remove(os.path.join(on_ray, "labels", pieces.piece_name("summary", 2, 4, "json")))
  os.remove(os.path.join(on_ray, "features", pieces.piece_name("summary", 2, 4, "json")))
  ray_runner.run(c, on_ray, "all", labeler=FakeLabeler(), transcriber=FakeTranscriber())
  rewritten = {p for p in pieced if os.stat(os.path.join(on_ray, p)).st_mtime_ns != before[p]}
  assert rewritten and all(re.search(r"^(labels|features)/.*-00002-of-00004\.", p) for p in rewritten), rewritten
  assert not any(p.startswith("asr/") for p in rewritten)
  want, got = tree_bytes(str(tmp_path / "weak4_local")), tree_bytes(on_ray)
  assert [p for p in want if got.get(p) != want[p]] == []


@pytest.mark.slow
@pytest.mark.subprocess
def test_command_line_runner_ray(tmp_path):
  pytest.importorskip("ray", reason="the Ray runner's tests need Ray: pip install 'lanser-jax[ray]'")
  root = str(tmp_path / "corpus")
  make_bad_folder(root)
  flags = ["--config=lanser_jax/experiments/labeling/local_tiny.py", f"--config.manifest.root={root}",
           "--config.features.label_source=none", "--config.num_pieces=2",
           "--config.stages=('manifest','features')", "--stage=all"]
  cmd = [sys.executable, "-m", "lanser_jax.stages.main", "--runner=ray", f"--workdir={tmp_path / 'ray'}", *flags]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "utterances in 11 = written 6 + rejected 5" in proc.stderr, proc.stderr[-3000:]
  local = subprocess.run([sys.executable, "-m", "lanser_jax.stages.main", f"--workdir={tmp_path / 'local'}",
                          *flags], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert local.returncode == 0, local.stderr[-3000:]
  want, got = tree_bytes(str(tmp_path / "local")), tree_bytes(str(tmp_path / "ray"))
  assert sorted(got) == sorted(want) and [p for p in want if got[p] != want[p]] == []
  refused = subprocess.run(cmd + ["--num_processes=2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1] == (
      "error: --runner=ray schedules the pieces itself; run one driver without --num_processes or "
      "--jax_distributed")


@pytest.mark.slow
@pytest.mark.subprocess
def test_command_line_joins_an_existing_cluster(tmp_path):
  """--ray_address: a cluster this command did not start (`ray start --head`, as on a cluster's head node)."""
  pytest.importorskip("ray", reason="the Ray runner's tests need Ray: pip install 'lanser-jax[ray]'")
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  # The workers import the project from the head's environment; token authentication is for real clusters.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]), RAY_AUTH_MODE="disabled")
  temp = tempfile.mkdtemp(prefix="lanser_ray_")  # short: Ray's socket paths must stay under 107 characters
  log = open(tmp_path / "head.log", "w")
  head = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block",
                           "--num-cpus=2", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false",
                           f"--temp-dir={temp}", "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + 120
    while "--block" not in (tmp_path / "head.log").read_text():
      assert head.poll() is None and time.monotonic() < deadline, (tmp_path / "head.log").read_text()[-3000:]
      time.sleep(1)
    root = str(tmp_path / "corpus")
    make_bad_folder(root)
    flags = ["--config=lanser_jax/experiments/labeling/local_tiny.py", f"--config.manifest.root={root}",
             "--config.features.label_source=none", "--config.num_pieces=3",
             "--config.stages=('manifest','features')", "--config.ray.features.num_actors=3",
             "--config.ray.features.num_cpus=1", "--stage=all"]
    proc = subprocess.run([sys.executable, "-m", "lanser_jax.stages.main", "--runner=ray",
                           f"--ray_address=127.0.0.1:{port}", f"--workdir={tmp_path / 'ray'}", *flags],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 3 actors of 1 CPU on a 2-CPU cluster: a warning (a cluster may grow); the two placed do every piece.
    assert ("warning: the Ray actors of stages ['features'] need more than the cluster has (CPU 3 > 2): lower "
            "config.ray.<stage>.num_actors / num_cpus / num_gpus / resources, unless the cluster's autoscaler adds "
            "nodes") in proc.stderr, proc.stderr[-3000:]
    assert re.search(r"pieces 3/3 \(features 3\); actors not placed yet: features 1$", proc.stderr, re.M)
    assert head.poll() is None  # the command leaves a cluster it did not start running
  finally:
    head.terminate()
    head.wait(60)
    log.close()
    shutil.rmtree(temp, ignore_errors=True)
  local = subprocess.run([sys.executable, "-m", "lanser_jax.stages.main", f"--workdir={tmp_path / 'local'}", *flags],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert local.returncode == 0, local.stderr[-3000:]
  want, got = tree_bytes(str(tmp_path / "local")), tree_bytes(str(tmp_path / "ray"))
  assert sorted(got) == sorted(want) and [p for p in want if got[p] != want[p]] == []


def test_the_ray_config_section_is_in_every_labelling_config():
  c = defaults.default_config()
  assert set(c.ray) == {"asr", "label", "features", "max_retries", "progress_seconds"}
  assert set(c.ray) - {"max_retries", "progress_seconds"} == {s.name for s in chain.STAGES if s.pieced}
  assert json.loads(c.to_json())["ray"]["asr"] == {"num_actors": 1, "num_cpus": 1.0, "num_gpus": 0.0,
                                                   "resources": {"TPU": 0.0}}
