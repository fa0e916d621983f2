#!/usr/bin/env bash
# Every accelerator figure the README's cost table needs, on one GPU machine, in one go (<= 8 minutes).
#
#   bash benchmarks/accelerator_suite.sh --out=/tmp/accel [--wheels=DIR] [--python=PY] [--torch_python=PY]
#   bash benchmarks/accelerator_suite.sh --smoke --out=/tmp/accel_smoke    # CPU, tiny sizes (tests run it)
#
# Figures, one JSON each under --out (and suite.json: status, seconds and file of each):
#   train_step/train_step.json          ResNet-50 train step, JAX (float32, bfloat16) vs PyTorch on the GPU,
#                                       batch 256: examples/s, MFU, peak memory (benchmarks/train_step.py)
#   input_pipeline/input_pipeline.json  the input pipeline (old and new, 0/1/2 workers, per core) against
#                                       that step's real consumption at batch 256 (benchmarks/input_pipeline.py)
#   entailment.json                     the entailment labeler at roberta-large size vs the transformers
#                                       zero-shot pipeline on the GPU (benchmarks/entailment.py)
#   asr/asr.json or features.json       Whisper throughput, hours of audio per hour: benchmarks/asr.py when it
#                                       exists, else the ASR row of benchmarks/features.py (CTranslate2)
# Each figure has its own time limit (the sum is 8 minutes); one that fails or runs out is recorded in
# suite.json and the others still run.
#
# Installs nothing from the network. A module the machine lacks is installed only from --wheels, a folder
# prepared beforehand on a machine with network, for the GPU machine's Python (3.11 here) and platform:
#   pip download --dest wheels --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
#     "jax[cuda12]>=0.10,<0.11" "transformers>=4.57,<4.58" "torch>=2.5,<3" "torchvision>=0.20,<1" \
#     "ctranslate2>=4.4,<5"
# (plus the project's own dependencies if the machine has no venv: pip download -d wheels -e . does not
# work, so list them from pyproject.toml). The script then runs pip install --no-index --find-links=DIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
OUT="" WHEELS="" SMOKE=0
PY="${REPO}/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
TORCH_PY=""
for arg in "$@"; do
  case "$arg" in
    --out=*) OUT="${arg#*=}" ;;
    --wheels=*) WHEELS="${arg#*=}" ;;
    --python=*) PY="${arg#*=}" ;;
    --torch_python=*) TORCH_PY="${arg#*=}" ;;
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "accelerator_suite.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || { echo "accelerator_suite.sh: --out=DIR is required" >&2; exit 2; }
mkdir -p "$OUT"
TORCH_PY="${TORCH_PY:-$PY}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

if [ "$SMOKE" = 0 ] && ! command -v nvidia-smi > /dev/null; then
  echo "accelerator_suite.sh: no nvidia-smi on this machine; use --smoke for the CPU check" >&2
  exit 3
fi

# ----- Modules: present, or installed from --wheels only --------------------------------------------
need() {  # need MODULE PIP_REQUIREMENT [PYTHON]
  local py="${3:-$PY}"
  if "$py" -c "import $1" 2> /dev/null; then return 0; fi
  if [ -z "$WHEELS" ]; then
    echo "  missing module $1 (no --wheels given: its figure will say so)" >&2; return 1
  fi
  echo "  installing $2 from $WHEELS" >&2
  "$py" -m pip install --no-index --find-links="$WHEELS" "$2" >&2
}
if [ "$SMOKE" = 0 ]; then
  "$PY" -c "import jax; assert jax.default_backend() == 'gpu'" 2> /dev/null \
    || need jax_cuda12_plugin "jax[cuda12]>=0.10,<0.11" || true
  need transformers "transformers>=4.57,<4.58" || true
  need torch "torch>=2.5,<3" "$TORCH_PY" || true
  need torchvision "torchvision>=0.20,<1" "$TORCH_PY" || true
  need ctranslate2 "ctranslate2>=4.4,<5" || true
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true
fi

# ----- Figures ---------------------------------------------------------------------------------------
STATUS=()
run() {  # run NAME LIMIT_S JSON_PATH COMMAND...
  local name="$1" limit="$2" json="$3"; shift 3
  local start end rc=0
  start=$(date +%s)
  echo "== $name (limit ${limit} s): $*" >&2
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1 || rc=$?
  end=$(date +%s)
  local ok=false
  [ "$rc" = 0 ] && [ -s "$json" ] && ok=true
  echo "   $name: exit $rc, $((end - start)) s, ok=$ok (log $OUT/$name.log)" >&2
  STATUS+=("{\"figure\": \"$name\", \"ok\": $ok, \"exit\": $rc, \"seconds\": $((end - start)), \"limit_s\": $limit, \"json\": \"$json\", \"log\": \"$OUT/$name.log\"}")
}

if [ "$SMOKE" = 1 ]; then
  # Each script's own smoke mode at its defaults: tests/test_benchmarks.py checks these figures' JSON, so the
  # suite and the per-script smoke tests are one run.
  run train_step 240 "$OUT/train_step/train_step.json" \
    "$PY" "$HERE/train_step.py" --smoke --out="$OUT/train_step"
  run input_pipeline 240 "$OUT/input_pipeline/input_pipeline.json" \
    "$PY" "$HERE/input_pipeline.py" --smoke --out="$OUT/input_pipeline"
  run entailment 240 "$OUT/entailment.json" \
    "$PY" "$HERE/entailment.py" --size=tiny --num_texts=8 --rounds=1 --templates=2 \
      --torch_python="$OUT/no_torch_in_smoke_mode" --workdir="$OUT/work" --out="$OUT/entailment.json"
  if [ -f "$HERE/asr.py" ]; then
    run asr 240 "$OUT/asr/asr.json" "$PY" "$HERE/asr.py" --smoke --out="$OUT/asr" --workdir="$OUT/asr"
  else
    run asr 240 "$OUT/features.json" "$PY" "$HERE/features.py" --clips=2 --seconds=1 --rounds=1 \
      --asr_model=none --out="$OUT/features.json"
  fi
else
  run train_step 150 "$OUT/train_step/train_step.json" \
    "$PY" "$HERE/train_step.py" --torch_device=cuda --batch=256 --rounds=2 --steps=10 --warmup=3 \
      --variants=jax_default,jax_ynn_bf16,torch_channels_last,torch_channels_last_bf16 \
      --torch_python="$TORCH_PY" --out="$OUT/train_step"
  run input_pipeline 120 "$OUT/input_pipeline/input_pipeline.json" \
    "$PY" "$HERE/input_pipeline.py" --step_variant=jax_default --step_batch=256 --steps=10 --rounds=2 \
      --out="$OUT/input_pipeline"
  run entailment 120 "$OUT/entailment.json" \
    "$PY" "$HERE/entailment.py" --size=large --torch_device=cuda:0 --num_texts=256 --rounds=2 \
      --batch_size=32 --torch_python="$TORCH_PY" --workdir="$OUT/work" --out="$OUT/entailment.json"
  if [ -f "$HERE/asr.py" ]; then
    run asr 90 "$OUT/asr/asr.json" "$PY" "$HERE/asr.py" --out="$OUT/asr"
  else
    run asr 90 "$OUT/features.json" "$PY" "$HERE/features.py" --rounds=1 --asr_rounds=1 \
      --out="$OUT/features.json"
  fi
fi

{
  echo "{\"suite\": \"accelerator\", \"smoke\": $([ "$SMOKE" = 1 ] && echo true || echo false),"
  echo " \"host\": \"$(hostname)\", \"date\": \"$(date -u +%FT%TZ)\", \"figures\": ["
  for i in "${!STATUS[@]}"; do
    [ "$i" -gt 0 ] && echo ","
    echo "  ${STATUS[$i]}"
  done
  echo "]}"
} > "$OUT/suite.json"
echo "wrote $OUT/suite.json" >&2
grep -q '"ok": false' "$OUT/suite.json" && exit 1 || exit 0
