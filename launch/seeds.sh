#!/usr/bin/env bash
# One config, several seeds, one after another; each run's final evaluation row
# (plus seed and wall time) is appended to PREFIX/finals.jsonl. A population
# (--config.population.size) runs many seeds in one program; this is the plain loop,
# one process per seed.
#   bash launch/seeds.sh configs/gan_setd.py runs/setd 0 1 2 3 4 [-- --config.x=y ...]
set -euo pipefail
config=${1:?config}; prefix=${2:?workdir prefix}; shift 2
seeds=(); while [ $# -gt 0 ] && [ "$1" != "--" ]; do seeds+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
mkdir -p "$prefix"
for seed in "${seeds[@]}"; do
  start=$(date +%s.%N)
  final=$(python -m jgen.main --config="$config" --config.seed="$seed" \
    --workdir="$prefix/seed$seed" "$@" 2>"$prefix/seed$seed.log" | tail -n 1)
  wall=$(python -c "print(round($(date +%s.%N) - $start, 1))")
  python -c "import json,sys; r=json.loads(sys.argv[1]); r.update(seed=$seed, wall_s=$wall); print(json.dumps(r))" \
    "$final" | tee -a "$prefix/finals.jsonl"
done
