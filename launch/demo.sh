#!/usr/bin/env bash
# The main job: LanSER end to end on a fresh machine (installs ./.venv first).
#   bash launch/demo.sh [--workdir=workdirs/demo] [--num_pretrain=800] [--nli_model=roberta-large-mnli] \
#       [--backbones=resnet18_w0.25,conformer_tiny,spectrogram_transformer_tiny]
# Rerunning on the same workdir reuses finished stages. Report: <workdir>/report/report.md
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_venv.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# XLA:CPU's default convolution lowering is the bottleneck of a CPU ResNet step; this flag more than
# doubles it (benchmarks/README.md, `train_step.py`). It is set here, for the CPU demo, never by library code.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
exec .venv/bin/python -m lanser_jax.demo.end_to_end "$@"
