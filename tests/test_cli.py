"""The command-line convention (lanser_jax/utils/cli.py): every command is an absl program with its own flags and
an entry point in pyproject.toml, --help shows its docstring and flags, experiment specs are found from any
working directory, and the wheel ships every file the package reads."""

import fnmatch
import importlib
import os
import re
import subprocess
import sys
import tomllib

from absl import flags
import pytest

from lanser_jax import config_lib
from lanser_jax.utils import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT = os.path.join(REPO, "pyproject.toml")


def _pyproject():
  with open(PYPROJECT, "rb") as f:
    return tomllib.load(f)


def _scripts():
  return _pyproject()["project"]["scripts"]


def test_every_command_has_an_entry_point_and_every_entry_point_is_a_command():
  """A module that runs `cli.run` is a command: it has a [project.scripts] name, its own FlagValues and an
  absl main, and its docstring shows the command by that name."""
  commands = set()
  for root, _, files in os.walk(os.path.join(REPO, "lanser_jax")):
    for name in files:
      path = os.path.join(root, name)
      if name.endswith(".py") and re.search(r"^  cli\.run\(main, FLAGS\)$", open(path, encoding="utf-8").read(),
                                            re.MULTILINE):
        commands.add(os.path.relpath(path, REPO)[:-3].replace(os.sep, "."))
  scripts = _scripts()
  assert {target.split(":")[0] for target in scripts.values()} == commands
  for script, target in scripts.items():
    assert script.startswith("lanser-"), script
    module_name, function = target.split(":")
    module = importlib.import_module(module_name)
    assert function == "run" and callable(module.run) and callable(module.main), target
    assert isinstance(module.FLAGS, flags.FlagValues) and module.FLAGS is not flags.FLAGS, target
    assert f"\n  {script} " in module.__doc__, f"{module_name}'s docstring does not show `{script} ...`"


def _run(args, cwd, **kwargs):
  env = dict(os.environ, PYTHONPATH=REPO)  # this checkout's package, whatever the working directory
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                        **kwargs)


def test_help_shows_the_docstring_and_the_flags_as_module_and_as_entry_point(tmp_path):
  # An entry point runs as the small script pip writes, whose own docstring is empty.
  wrapper = tmp_path / "lanser-sweep"
  wrapper.write_text("import sys\nfrom lanser_jax.tools.sweep import run\n"
                     "if __name__ == '__main__':\n  sys.exit(run())\n")
  for args in (["-m", "lanser_jax.tools.sweep", "--help"], [str(wrapper), "--helpshort"]):
    out = _run(args, cwd=tmp_path)
    assert out.returncode == 1, out.stderr  # absl's --help exits with 1
    assert out.stdout.startswith("Runs, prints or aggregates every cell of a sweep file"), out.stdout[:300]
    for flag in ("--sweep:", "--root:", "--[no]print:", "--only:", "--cell:"):
      assert flag in out.stdout, (flag, out.stdout)
    assert "--helpfull" in out.stdout and "--verbosity" not in out.stdout  # absl's own flags: --helpfull only


def test_bad_flags_are_one_line(tmp_path):
  missing = _run(["-m", "lanser_jax.input_pipeline.synthetic", "--num_train=4"], cwd=tmp_path)
  assert missing.returncode == 1 and "Traceback" not in missing.stderr
  assert "FATAL Flags parsing error: flag --out=None: Flag --out must have a value other than None." in \
      missing.stderr
  both = _run(["-m", "lanser_jax.tools.sweep", "--sweep=x.py", "--root=r", "--print", "--run"], cwd=tmp_path)
  assert both.returncode == 1 and "Traceback" not in both.stderr
  assert "Exactly one of (print, run, aggregate) must be True" in both.stderr
  absent = _run(["-m", "lanser_jax.tools.sweep", "--sweep=lanser_jax/experiments/sweeps/nope.py",
                 "--root=r", "--print"], cwd=tmp_path)
  assert absent.returncode == 2 and "Traceback" not in absent.stderr
  assert "error: sweep file lanser_jax/experiments/sweeps/nope.py not found" in absent.stderr


def test_call_reparses_from_the_defaults(tmp_path, capsys):
  from lanser_jax.input_pipeline import synthetic
  assert cli.call(synthetic, [f"--out={tmp_path / 'a'}", "--num_train=8", "--num_eval=4", "--num_classes=2"]) == 0
  assert cli.call(synthetic, [f"--out={tmp_path / 'b'}", "--num_eval=4"]) == 0  # --num_train back to 256
  out = capsys.readouterr().out.splitlines()
  assert "'num_examples': 8," in out[0] and "'num_examples': 256," in out[1]


def test_experiment_specs_resolve_in_the_package_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  spec = "lanser_jax/experiments/synthetic.py"
  assert config_lib.resolve_path(spec) == os.path.join(config_lib.PACKAGE_DIR, "experiments", "synthetic.py")
  assert config_lib.load_experiment(spec + ":runlocal").model.name == "tiny"
  fv = flags.FlagValues()
  holder = config_lib.define_config_flag("config", "an experiment", fv)
  fv(["prog", f"--config={spec}:runlocal"])
  assert holder.value.model.name == "tiny"
  # A file that exists where it is named wins: a spec means the same file in a checkout and elsewhere.
  (tmp_path / "lanser_jax" / "experiments").mkdir(parents=True)
  (tmp_path / spec).write_text("import ml_collections\n"
                               "def get_config(arg=None):\n  return ml_collections.ConfigDict({'here': arg})\n")
  assert config_lib.load_experiment(spec + ":x").here == "x"
  with pytest.raises(FileNotFoundError, match=r"experiment file lanser_jax/experiments/nope.py not found, "
                     r"neither from the working directory \(.*\) nor in the installed package"):
    config_lib.load_experiment("lanser_jax/experiments/nope.py:runlocal")
  with pytest.raises(flags.IllegalFlagValueError, match="flag --config=other.py: experiment file other.py not "
                     "found, neither from the working directory"):
    fv(["prog", "--config=other.py"])


def test_the_wheel_ships_every_file_the_package_holds():
  """setuptools takes the packages with an __init__.py and, of the other files, those package-data names;
  a data file left out (or a folder of modules without __init__.py) would be missing from an installed wheel."""
  patterns = _pyproject()["tool"]["setuptools"]["package-data"]["lanser_jax"]
  tracked = subprocess.run(["git", "ls-files", "lanser_jax"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
  assert tracked, "git ls-files found nothing"
  left_out = []
  for path in tracked:
    folder, name = os.path.split(path)
    if name.endswith(".py"):
      if not os.path.exists(os.path.join(REPO, folder, "__init__.py")):
        left_out.append(f"{path} (no __init__.py in {folder})")
    elif not any(fnmatch.fnmatch(os.path.relpath(path, "lanser_jax"), p) for p in patterns):
      left_out.append(path)
  assert not left_out, left_out


def test_quiet_libraries_keeps_warnings_and_the_project_s_own_lines():
  import logging as logging_std

  def record(path, level, msg="saved"):
    return logging_std.LogRecord("absl", level, path, 1, msg, None, None)

  quiet = cli.QuietLibraries()
  site = "/venv/lib/python3.11/site-packages"
  assert not quiet.filter(record(f"{site}/orbax/checkpoint/checkpoint_manager.py", logging_std.INFO))
  assert not quiet.filter(record(f"{site}/grain/_src/python/data_loader.py", logging_std.INFO))
  assert quiet.filter(record(f"{site}/orbax/checkpoint/checkpoint_manager.py", logging_std.WARNING))
  assert not quiet.filter(record(f"{site}/orbax/checkpoint/checkpoint_manager.py", logging_std.WARNING,
                                 "Requested `tracked_metric`=validation/ua, but it was not found"))
  assert quiet.filter(record("/repo/lanser_jax/train.py", logging_std.INFO))

