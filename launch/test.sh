#!/usr/bin/env bash
# Runs the test suite on CPU (8 fake devices), after making sure .venv is installed: one pytest-xdist worker
# per core, at most 4 (LANSER_TEST_WORKERS to change; 0 = in this process), each test file kept in one worker so its
# module fixtures (a trained run, a server) are built once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_venv.sh
cores=$(nproc)
exec .venv/bin/python -m pytest -q -n "${LANSER_TEST_WORKERS:-$((cores < 4 ? cores : 4))}" --dist loadfile tests "$@"
