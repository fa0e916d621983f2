"""Experiment arguments (`file.py:key=value,...`) are typed by their defaults, and a value of the wrong type
(a misspelt boolean above all) is an error naming the argument and the value."""

import pytest

from lanser_jax import config_lib


@pytest.mark.parametrize("value,expected", [
    ("true", True), ("True", True), ("TRUE", True), ("1", True), ("yes", True), ("Yes", True),
    ("false", False), ("False", False), ("FALSE", False), ("0", False), ("no", False), ("NO", False)])
def test_booleans_in_every_accepted_spelling(value, expected):
  assert config_lib.parse_arg(f"soft={value}", soft=not expected).soft is expected


def test_a_bare_boolean_key_means_true():
  arg = config_lib.parse_arg("runlocal,soft", soft=False)
  assert arg.runlocal is True and arg.soft is True
  assert config_lib.parse_arg(None, soft=False).runlocal is False


@pytest.mark.parametrize("value", ["Ture", "flase", "2", "y", "on", "none", " true"])
def test_a_misspelt_boolean_is_an_error_naming_argument_and_value(value):
  with pytest.raises(ValueError) as e:
    config_lib.parse_arg(f"fraction=0.5,soft={value}", soft=False, fraction=1.0)
  assert f"soft={value!r}" in str(e.value) and "boolean" in str(e.value)


def test_other_types_and_unknown_keys():
  arg = config_lib.parse_arg("fraction=0.25,seed=3,name=x,free=anything", fraction=1.0, seed=0, name="a",
                             free=None)
  assert (arg.fraction, arg.seed, arg.name, arg.free) == (0.25, 3, "x", "anything")
  with pytest.raises(ValueError, match=r"seed='two': expected int"):
    config_lib.parse_arg("seed=two", seed=0)
  with pytest.raises(KeyError, match="not one of"):
    config_lib.parse_arg("colour=blue", seed=0)


def test_experiment_files_reject_a_misspelt_boolean():
  import os
  path = os.path.join(os.path.dirname(__file__), "..", "lanser_jax", "experiments", "pretrain_peoples_speech.py")
  with pytest.raises(ValueError, match=r"soft='Ture'"):
    config_lib.load_experiment(path + ":soft=Ture")
  assert config_lib.load_experiment(path + ":soft=yes").data.target == "scores"
