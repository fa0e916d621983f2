#!/usr/bin/env bash
# Runs one command on every worker of a Cloud TPU VM pod slice at once (JAX detects the pod itself).
#
#   launch/tpu_pod.sh TPU_NAME ZONE setup                      # clone-side setup on all workers, once
#   launch/tpu_pod.sh TPU_NAME ZONE mount DATA_BUCKET /mnt/data  # gcsfuse mount of the feature bucket
#   launch/tpu_pod.sh TPU_NAME ZONE train lanser_jax/experiments/pretrain_peoples_speech.py:platform=tpu gs://bucket/runs/ps \
#       --config.data.dir=/mnt/data/ps_features
#   launch/tpu_pod.sh TPU_NAME ZONE label lanser_jax/experiments/labeling/peoples_speech.py gs://bucket/ps_labels
#
# `setup` makes .venv with Python 3.12 ($PYTHON to change it; 3.11 works with jax 0.10) and the jax[tpu] extra
# at the jax version pyproject.toml resolves to (0.12.x on 3.12). The TPU VM image must have that Python
# (e.g. `sudo apt-get install python3.12-venv` on images that ship an older one).
# The repository must be at the same path ($REPO, default ~/lanser-jax) on every worker. The workers' disks
# are not shared, so workdirs are bucket URLs (gs://...; the VM's service account is the credential) and
# feature shards are read from gs:// directly or from the gcsfuse mount. After a preemption, the same train
# command resumes from the latest checkpoint in the bucket. Training runs `--distributed=auto`; the labelling stages run
# one shard range per worker (--jax_distributed gives each its process index).
set -euo pipefail
TPU=$1 ZONE=$2 WHAT=$3
shift 3
REPO=${REPO:-~/lanser-jax}
ssh_all() { gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command "$1"; }
case "$WHAT" in
  setup)
    ssh_all "cd $REPO && PYTHON=${PYTHON:-python3.12} ACCELERATOR=tpu bash launch/setup_venv.sh" ;;
  mount)  # gcsfuse (preinstalled on TPU VM images; else apt-get install gcsfuse) on every worker
    ssh_all "mkdir -p $2 && (mountpoint -q $2 || gcsfuse --implicit-dirs $1 $2)" ;;
  train)
    ssh_all "cd $REPO && .venv/bin/python -m lanser_jax.main --config=$1 --workdir=$2 --distributed=auto ${*:3}" ;;
  label)
    ssh_all "cd $REPO && .venv/bin/python -m lanser_jax.stages.main --config=$1 --workdir=$2 --stage=all --jax_distributed ${*:3}" ;;
  *)
    echo "usage: $0 TPU_NAME ZONE setup|mount|train|label ..." >&2; exit 2 ;;
esac
