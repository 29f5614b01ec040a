#!/usr/bin/env bash
# The final rows of a fixed set of short runs, one JSON line each: record them before moving
# code, rerun after, and diff. A refactor changes no result, digests included.
#   bash benchmarks/reference_rows.sh OUT_DIR > before.jsonl   (then the same > after.jsonl)
set -euo pipefail
out="${1:?usage: reference_rows.sh OUT_DIR}"
rm -rf "$out"; mkdir -p "$out"
run() { python -m jgen.main --workdir="$out/$1" "${@:2}" 2>/dev/null | tail -1 | sed "s/^/{\"run\": \"$1\", \"row\": /; s/$/}/"; }
study() { python -m jgen.study --workdir="$out/$1" "${@:2}" >/dev/null 2>&1; echo "{\"run\": \"$1\", \"table\": $(python -c "import json,sys; print(json.dumps(open(sys.argv[1]).read()))" "$(ls "$out/$1"/*.md | head -1)")}"; }
run gan --config=configs/gan.py:runlocal
run gan_setd --config=configs/gan_setd.py:runlocal
run gan_pop3 --config=configs/gan.py:runlocal --config.population.size=3
run pacgan --config=configs/pacgan.py:runlocal
run flow --config=configs/flow.py:runlocal
run noise --config=configs/flow.py:runlocal,objective=noise_prediction
run dflow --config=configs/dflow.py:runlocal
run dgn --config=configs/dgn.py:runlocal
run dip --config=configs/dip.py:runlocal
run sd_gan --config=configs/stacked_digits_gan.py:runlocal
study order --config=configs/study_sampling_order.py:runlocal
