def load(*args, **kwargs): from lanser_jax import inference; return inference.load(*args, **kwargs)  # lazy: no jax import
