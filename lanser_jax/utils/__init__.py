"""Utilities every part uses: file I/O for local and bucket paths, progress lines, thread prefetch, typed options."""
