"""Re-samples a finished level-ratio run with another number of Langevin steps per level.

  PYTHONPATH=. python docs/results/level_ratio/resample.py grid25 40

Reads runs/level_ratio_<data> (configs/dflow.py:objective=level_ratio, population of 5), restores
its newest intact checkpoint, draws 500 samples per member with `sampling.num_steps` set to the
given steps and prints one JSON row: the trained D is unchanged, only the sampler's budget moves.
"""

import json
import sys

import ml_collections

from jgen.run import checkpoints, workdir
from jgen.trainers import denoise


def main(data: str, steps: int) -> dict:
  run_dir = f"runs/level_ratio_{data}"
  config = ml_collections.ConfigDict(workdir.read_config(run_dir))
  config.sampling.num_steps = steps
  config.eval.num_samples = 500
  config.eval.sample_batch = 500
  config.lock()
  den, root, _ = denoise.build(config)
  state, step, _ = checkpoints.restore_newest_intact(
    run_dir, config.train.keep_checkpoints, den.init_state(root)
  )
  _, row = denoise.evaluate(den, state, root)
  return {
    "data": data,
    "steps_per_level": steps,
    "step": step,
    "modes": row["modes"],
    "high_quality": [round(x, 3) for x in row["high_quality"]],
    "reverse_kl": row["reverse_kl"],
  }


if __name__ == "__main__":
  print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
