"""init_from naming a run of another model (lanser_jax/engine/init_from.py): one line, before any work."""

import json

import pytest

from lanser_jax import config_lib
from lanser_jax.engine import checkpointing, init_from


def test_another_model_is_one_line_naming_keys_values_and_the_flags(tmp_path):
  """`:runlocal` swaps in the tiny model; init_from naming a run of another model stops in one line naming the
  keys, their values and the flags that keep the source's model."""
  source = tmp_path / "pre"
  (source / "checkpoints" / "40" / "state").mkdir(parents=True)
  c = config_lib.runlocal(config_lib.base_config())
  (source / "config.json").write_text(json.dumps({"model": dict(c.model.to_dict(), name="resnet18", width=0.25)}))
  step = str(source / "checkpoints" / "40")  # a step folder: the config is found above it
  with pytest.raises(checkpointing.CheckpointMismatchError) as e:
    init_from.check_model(step, c.model)
  assert "\n" not in str(e.value)
  assert str(e.value) == (f"init_from={step} was trained with model name='resnet18', width=0.25; this config "
                          "builds name='tiny', width=1.0 (':runlocal' sets model.name='tiny'): keep the source's "
                          "model with --config.model.name=resnet18 --config.model.width=0.25, or init from a run "
                          "of this model")
  c.model.name, c.model.width = "resnet18", 0.25
  init_from.check_model(step, c.model)  # the same model: nothing to say
  (source / "config.json").unlink()
  init_from.check_model(step, c.model)  # no config.json: left to the comparison of the arrays
