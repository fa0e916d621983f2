"""The old command of the offline stages, kept so that existing scripts still run: it is
`python -m lanser_jax.offline.main` (same flags), with a message."""

from lanser_jax.offline import chain, main

if __name__ == "__main__":
  chain.log("warning: python -m lanser_jax.labeling.run is deprecated: use python -m lanser_jax.offline.main "
            "(same flags)")
  main.run()
