"""Prints the tables of docs/config_checks.md from the checks themselves: the allowed range of every training key
(lanser_jax/config_checks.py) and labelling key (lanser_jax/stages/defaults.py), with its default.

  python -m lanser_jax.tools.config_tables > /tmp/tables.md   # paste over the tables of docs/config_checks.md

tests/test_config_checks.py fails when the page's tables differ from these.
"""

from __future__ import annotations

from lanser_jax import config_checks, config_lib
from lanser_jax.stages import defaults


def tables() -> dict[str, str]:
  """{"training": table, "labelling": table}, from the defaults the experiment files start from."""
  return {"training": config_checks.markdown_table(config_checks.TRAINING, config_lib.base_config()),
          "labelling": config_checks.markdown_table(defaults.CHECKS, defaults.default_config())}


def marker(name: str) -> str:
  """The comment line above each table in the docs page."""
  return f"<!-- {name} checks: python -m lanser_jax.tools.config_tables -->"


if __name__ == "__main__":
  for name, table in tables().items():
    print(f"{marker(name)}\n{table}\n")
