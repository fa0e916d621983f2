"""Labelling configs of the offline stages, one per corpus."""
