#!/usr/bin/env bash
# One machine, all local GPUs: the batch is sharded over them by the mesh.
#   bash launch/local_gpu.sh configs/gan_setd.py runs/gan_setd_gpu [--config.seed=1 ...]
# Install once: pip install -c requirements/cuda12.txt -e ".[cuda12]"
set -euo pipefail
config=${1:?config file}; workdir=${2:?workdir}; shift 2
# Let XLA take memory as needed instead of 75% up front (several runs can share a GPU).
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python -m jgen.main --config="$config" --workdir="$workdir" "$@"
