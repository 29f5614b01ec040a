#!/usr/bin/env bash
# The sampling-order study's PILOT (issue: "an operating point that can move"): where does the
# baseline order (epoch_shuffle) collapse in roughly 35-65% of seeds? Per-sample D on ring8,
# batch 8, N in {64, 100000}, Adam and SGD, three widths, three learning rates per population
# (variants), 8 pilot seeds per variant: seeds 10000-10007, disjoint from the confirmatory
# seeds (0 up). 20,000 steps, evaluated every 1,000, so the pilot also shows how the collapse
# rate moves with the length. Resumable: rerun the same command; each population is a run.
#   bash launch/pilot_sampling_order.sh runs/pilot_order
#   python launch/pilot_report.py runs/pilot_order > docs/preregistration/sampling_order_pilot.md
set -euo pipefail
out="${1:?usage: pilot_sampling_order.sh OUT_DIR}"
mkdir -p "$out"
# Stage 2 (sgd_low), added after stage 1 showed SGD collapsing in every seed at 3e-3 and above.
declare -A rates=([adam]="3e-5|1e-4|3e-4" [sgd]="3e-3|1e-2|3e-2" [sgd_low]="3e-4|1e-3|2e-3")
for n in 64 100000; do
  for setting in adam sgd sgd_low; do
    optimizer="${setting%_low}"
    for width in 32 64 128; do
      name="n${n}-${setting}-w${width}"
      [[ -f "$out/$name/final.json" ]] && continue
      python -m jgen.main --config=configs/gan.py --workdir="$out/$name" \
        --config.seed=10000 --config.data.num_train="$n" --config.train.batch_size=8 \
        --config.optimizer.name="$optimizer" \
        --config.model.generator.width="$width" --config.model.generator.depth=3 \
        --config.model.discriminator.width="$width" --config.model.discriminator.depth=2 \
        --config.train.num_steps=20000 --config.train.steps_per_dispatch=500 \
        --config.train.log_every=1000 --config.train.eval_every=1000 \
        --config.train.checkpoint_every=5000 --config.population.size=24 \
        --config.population.variants="optimizer.learning_rate=${rates[$setting]}" \
        > "$out/$name.json.tmp" && mv "$out/$name.json.tmp" "$out/$name/final.json"
    done
  done
done
