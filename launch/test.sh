#!/usr/bin/env bash
# Runs the test suite on CPU (8 fake devices), after making sure .venv is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_venv.sh
exec .venv/bin/python -m pytest -q tests "$@"
