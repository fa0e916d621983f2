"""Typed option dataclasses <-> config sections: the dataclass holds each default once, the config's section
is made from it, and the dataclass is read back from a (possibly partial) section."""

from __future__ import annotations

import dataclasses
from typing import Any


def from_config(cls, config, **overrides: Any):
  """`cls` from the keys of `config` that are its fields (each cast to the type of its default); fields the
  section leaves out keep their defaults, `overrides` win over both."""
  values = {f.name: type(f.default)(config[f.name]) for f in dataclasses.fields(cls)
            if f.name in config and f.name not in overrides}
  return cls(**values, **overrides)


def config_section(cls, exclude: tuple[str, ...] = (), **extra: Any):
  """A ConfigDict of `cls`'s defaults (less `exclude`), followed by `extra` keys that are not options."""
  import ml_collections
  values = {f.name: f.default for f in dataclasses.fields(cls) if f.name not in exclude}
  return ml_collections.ConfigDict({**values, **extra})
