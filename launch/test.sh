#!/usr/bin/env bash
# Runs the tests on CPU, after making sure .venv is installed (README, "Tests"):
#   bash launch/test.sh                the whole suite (what CI runs)
#   bash launch/test.sh --quick        the inner loop: every test not marked slow, subprocess, cloud or needs_model
#   bash launch/test.sh [--quick] tests/engine -x --durations=30    other arguments go to pytest (not -m)
# Each run is two pytest sessions side by side: the tests marked multidevice on 8 fake CPU devices (one process),
# the others on one device (tests/conftest.py sets the count from the selection), in one pytest-xdist worker per
# core, at most 4 (LANSER_TEST_WORKERS to change; 0 = in the pytest process), each test file kept in one worker
# so its module fixtures (a trained run, a server) are built once. Compiled steps are shared through
# build/jax_cache. LANSER_TEST_PYTHON=<python with the test extra> skips the .venv setup.
set -uo pipefail
cd "$(dirname "$0")/.."
tier="all"
if [[ ${1:-} == --quick ]]; then
  tier="not slow and not subprocess and not cloud and not needs_model"
  shift
fi
for arg in "$@"; do
  if [[ $arg == -m* ]]; then
    echo "[test] launch/test.sh chooses -m itself (the tier); run pytest directly for another selection" >&2
    exit 2
  fi
done
python=${LANSER_TEST_PYTHON:-}
if [[ -z $python ]]; then
  bash launch/setup_venv.sh || exit 1
  python=.venv/bin/python
fi
tier_and() { [[ $tier == all ]] && echo "$1" || echo "($tier) and $1"; }
cores=$(nproc)
workers=${LANSER_TEST_WORKERS:-$((cores < 4 ? cores : 4))}

multidevice_log=$(mktemp)
"$python" -m pytest -q -m "$(tier_and multidevice)" "$@" >"$multidevice_log" 2>&1 &
multidevice_pid=$!
trap 'kill "$multidevice_pid" 2>/dev/null; rm -f "$multidevice_log"' EXIT
trap 'exit 130' INT TERM
echo "[test] one-device tests ($workers workers), the multidevice ones beside them (8 fake devices, output below)" >&2
"$python" -m pytest -q -n "$workers" --dist loadfile -m "$(tier_and "not multidevice")" "$@"
one_device=$?
wait "$multidevice_pid"
multidevice=$?
echo "[test] ---- multidevice tests (8 fake CPU devices) ----" >&2
cat "$multidevice_log"
# 5: the selection had no test of that kind (e.g. a folder without multidevice tests), not a failure.
status=0
for rc in $one_device $multidevice; do
  [[ $rc == 0 || $rc == 5 ]] || status=1
done
if [[ $one_device == 5 && $multidevice == 5 ]]; then status=5; fi
exit $status
