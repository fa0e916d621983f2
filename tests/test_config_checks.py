"""Config values outside their documented range are refused before any work, one line per key naming the
value and the range; every numeric and enumerated key has a check; the docs table is the checked table."""

import glob
import os
import re

import pytest

from helpers import REPO, tiny_config
from lanser_jax import config_checks, config_lib, train
from lanser_jax.tools import config_tables
from lanser_jax.engine import metrics
from lanser_jax.stages import chain, defaults

# String keys that name things (folders, splits, models on a hub, free text): no range to check.
TRAINING_FREE = {"data.dir", "data.train_split", "data.eval_split", "data.test_split", "data.stats_file",
                 "sharding.mesh", "sharding.rules", "init_from"}
LABELLING_FREE = {"manifest.root", "asr.model", "asr.language", "labeler.model", "labeler.template",
                  "labeler.templates", "labeler.template_languages", "labeler.taxonomy", "label.languages",
                  "features.dir_name", "features.label_names", "features.stats_split"}


def _leaves(config, prefix=""):
  out = {}
  for key, value in config.items():
    name = prefix + key
    if hasattr(value, "items"):
      out.update(_leaves(value, name + "."))
    else:
      out[name] = value
  return out


@pytest.mark.parametrize("checks,config,free", [
    (config_checks.TRAINING, config_lib.base_config(), TRAINING_FREE),
    (defaults.CHECKS, defaults.default_config(), LABELLING_FREE)], ids=["training", "labelling"])
def test_every_numeric_and_enumerated_key_has_a_check(checks, config, free):
  checked = {c.key for c in checks}
  leaves = _leaves(config)
  # A key that is none of these (a new setting) needs a check, or an entry in the free list with a reason.
  assert sorted(set(leaves) - checked - free) == []
  assert sorted(checked - set(leaves)) == []  # no check of a key that does not exist
  assert config_checks.problems(checks, config, {"device_count": 1, "mel_bins": 64}) == []


def test_choice_lists_match_what_the_code_produces():
  assert config_checks.METRICS == metrics.SCALARS


def _experiments(folder):
  return [f for f in sorted(glob.glob(os.path.join(REPO, "lanser_jax", "experiments", folder, "*.py")))
          if os.path.basename(f) not in ("__init__.py", "common.py")]


def _load(path, arg):
  try:
    return config_lib.load_experiment(f"{path}:{arg}")
  except ValueError:  # an IEMOCAP experiment: its fold must be named
    return config_lib.load_experiment(f"{path}:{','.join(filter(None, [arg, 'fold=1']))}")


@pytest.mark.parametrize("path", _experiments(""), ids=os.path.basename)
def test_every_training_experiment_passes(path):
  for arg in ("", "runlocal"):
    config = _load(path, arg)
    assert config_checks.problems(config_checks.TRAINING, config, {"device_count": 1, "mel_bins": 64}) == []


@pytest.mark.parametrize("path", _experiments("labeling"), ids=os.path.basename)
def test_every_labelling_experiment_passes(path):
  assert config_checks.problems(defaults.CHECKS, config_lib.load_experiment(path)) == []


# The impossible settings, each of which trained (or crashed late) before these checks.
FUZZ = [
    ({"optimizer.learning_rate": -1.0}, "config.optimizer.learning_rate=-1.0: allowed a finite number > 0"),
    ({"label_smoothing": 2.0}, "config.label_smoothing=2.0: allowed a finite number in [0, 1)"),
    ({"num_train_steps": -5}, "config.num_train_steps=-5: allowed an integer >= 1"),
    ({"data.label_fraction": 1.5}, "config.data.label_fraction=1.5: allowed a finite number in (0, 1]"),
    ({"specaugment.max_freq_width": 200}, "config.specaugment.max_freq_width=200: allowed < the features' mel "
                                          "bins (a mask within the spectrogram) (the features have 32 mel bins)"),
    ({"specaugment.max_time_width": 500}, "config.specaugment.max_time_width=500: allowed <= data.crop_frames"),
    ({"optimizer.learning_rate": float("nan")}, "config.optimizer.learning_rate=nan: allowed a finite number > 0"),
    ({"data.eval_hop_frames": 0}, "config.data.eval_hop_frames=0: allowed an integer >= 1"),
    ({"model.dropout_rate": 1.0}, "config.model.dropout_rate=1.0: allowed a finite number in [0, 1)"),
]


@pytest.mark.parametrize("overrides,line", FUZZ, ids=[next(iter(o)) + "=" + str(next(iter(o.values())))
                                                       for o, _ in FUZZ])
def test_impossible_training_settings_are_refused_before_any_work(synth_dir, tmp_path, overrides, line):
  workdir = str(tmp_path / "run")
  config = tiny_config(synth_dir, **{"batch_size": 8, **overrides})
  with pytest.raises(config_checks.ConfigError) as e:
    train.train_and_evaluate(config, workdir)
  assert str(e.value).splitlines()[0].startswith(line)
  # The mel-bin check needs the stats file (read, not written); every other check comes first.
  assert not os.path.exists(os.path.join(workdir, "checkpoints"))
  assert not os.path.exists(os.path.join(workdir, "config.json"))


def test_several_wrong_keys_are_all_listed(synth_dir):
  config = tiny_config(synth_dir, **{"label_smoothing": 2.0, "optimizer.b2": 1.0, "keep_checkpoints": 0})
  with pytest.raises(config_checks.ConfigError) as e:
    config_checks.check_training(config, device_count=1)
  lines = str(e.value).splitlines()
  assert lines[0].endswith("(and 2 more below)")
  assert [line.split("=")[0] for line in lines[:3]] == [
      "config.optimizer.b2", "config.label_smoothing", "config.keep_checkpoints"]


def test_batches_must_divide_over_devices_and_processes():
  config = config_lib.base_config()
  config.batch_size, config.eval_batch_size = 12, 64
  assert config_checks.problems(config_checks.TRAINING, config, {"device_count": 8}) == [
      "config.batch_size=12: allowed divisible by the device count and the process count "
      "(not divisible by the 8 devices)"]
  config.batch_size = 8
  assert config_checks.problems(config_checks.TRAINING, config, {"device_count": 4, "process_count": 3}) == [
      "config.batch_size=8: allowed divisible by the device count and the process count "
      "(not divisible by the 3 processes)",
      "config.eval_batch_size=64: allowed divisible by the device count and the process count "
      "(not divisible by the 3 processes)"]


def test_cross_checks_wait_for_their_context():
  config = config_lib.base_config()
  config.specaugment.max_freq_width = 200
  assert config_checks.problems(config_checks.TRAINING, config) == []  # mel bins not known yet
  assert len(config_checks.problems(config_checks.TRAINING, config, {"mel_bins": 64})) == 1


@pytest.mark.parametrize("key,value,line", [
    ("num_pieces", 0, "config.num_pieces=0: allowed an integer >= 1"),
    ("features.fmax", 9000.0, "config.features.fmax=9000.0: allowed 0 (audio.sample_rate / 2) or in"),
    ("label.max_no_speech_prob", 1.5, "config.label.max_no_speech_prob=1.5: allowed a finite number in [0, 1]"),
    ("asr.packing", "yes", "config.asr.packing='yes': allowed one of 'on', 'off'"),
])
def test_impossible_labelling_settings_are_refused_before_any_work(tmp_path, key, value, line):
  config = defaults.default_config()
  config_lib.set_override(config, key, value)
  with pytest.raises(config_checks.ConfigError) as e:
    chain.run_stages(config, str(tmp_path / "work"), "all", (0, 1))
  assert str(e.value).splitlines()[0].startswith(line)
  assert not os.path.exists(tmp_path / "work")


def test_docs_tables_are_the_checked_tables():
  with open(os.path.join(REPO, "docs", "config_checks.md"), encoding="utf-8") as f:
    page = f.read()
  for name, table in config_tables.tables().items():
    match = re.search(re.escape(config_tables.marker(name)) + r"\n(.*?)\n\n", page, re.S)
    assert match, f"docs/config_checks.md has no {name} table"
    assert match.group(1) == table, f"docs/config_checks.md's {name} table differs: regenerate it"
