"""Sweep files: the cells of each ablation, run with lanser_jax.tools.sweep."""
