#!/usr/bin/env bash
# Runs one command on every worker of a Cloud TPU VM pod slice at once (JAX detects the pod itself).
#
#   launch/tpu_pod.sh TPU_NAME ZONE setup                      # clone-side setup on all workers, once
#   launch/tpu_pod.sh TPU_NAME ZONE train experiments/pretrain_peoples_speech.py:platform=tpu gs://bucket/runs/ps
#   launch/tpu_pod.sh TPU_NAME ZONE label experiments/labeling/peoples_speech.py /mnt/data/ps_labels
#
# The repository must be at the same path ($REPO, default ~/lanser-jax) on every worker; workdirs should be on
# storage every worker sees (GCS or a shared disk). Training runs `--distributed=auto`; the labelling stages run
# one shard range per worker (--jax_distributed gives each its process index).
set -euo pipefail
TPU=$1 ZONE=$2 WHAT=$3
shift 3
REPO=${REPO:-~/lanser-jax}
ssh_all() { gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command "$1"; }
case "$WHAT" in
  setup)
    ssh_all "cd $REPO && bash launch/setup_venv.sh && .venv/bin/pip install -q 'jax[tpu]>=0.10,<0.11'" ;;
  train)
    ssh_all "cd $REPO && .venv/bin/python -m lanser_jax.main --config=$1 --workdir=$2 --distributed=auto ${*:3}" ;;
  label)
    ssh_all "cd $REPO && .venv/bin/python -m lanser_jax.labeling.run --config=$1 --workdir=$2 --stage=all --jax_distributed ${*:3}" ;;
  *)
    echo "usage: $0 TPU_NAME ZONE setup|train|label ..." >&2; exit 2 ;;
esac
