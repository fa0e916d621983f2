"""The experiment files: one ml_collections config per setting, values inline, shared facts in common.py."""
