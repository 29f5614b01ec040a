#!/usr/bin/env bash
# A TPU pod slice: every worker runs the same command (jax.distributed joins them).
#   bash launch/tpu_pod.sh my-tpu us-central2-b configs/gan_setd.py gs://bucket/runs/x
# The repo must be at ~/jgen on every worker with `pip install -c requirements/tpu.txt -e ".[tpu]"` done.
set -euo pipefail
tpu=${1:?TPU name}; zone=${2:?zone}; config=${3:?config}; workdir=${4:?workdir}; shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="\
  cd ~/jgen && python -m jgen.main --multihost --config=$config --workdir=$workdir $*"
