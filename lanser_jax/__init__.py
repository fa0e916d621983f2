"""LanSER in JAX: `lanser_jax.load(workdir)` restores a trained run for prediction (lanser_jax/serving/classifier.py)."""


def load(*args, **kwargs):
  """`lanser_jax.serving.classifier.load` (imported on first use, so `import lanser_jax` imports no JAX)."""
  from lanser_jax.serving import classifier
  return classifier.load(*args, **kwargs)
