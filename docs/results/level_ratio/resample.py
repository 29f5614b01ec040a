import json, sys
import ml_collections
from jgen.run import checkpoints, workdir
from jgen.trainers import denoise
import numpy as np

d = sys.argv[1]
steps = int(sys.argv[2])
config = ml_collections.ConfigDict(workdir.read_config(f"runs/level_ratio_{d}"))
config.sampling.num_steps = steps
config.eval.num_samples = 500
config.eval.sample_batch = 500
config.lock()
den, root, _ = denoise.build(config)
ck = checkpoints.Checkpoints(f"runs/level_ratio_{d}", keep=3)
state, step, _ = ck.restore_verified(den.init_state(root))
ck.close()
samples, row = denoise.evaluate(den, state, root)
print(
  json.dumps(
    {
      "data": d,
      "steps_per_level": steps,
      "step": step,
      "modes": row["modes"],
      "high_quality": [round(x, 3) for x in row["high_quality"]],
      "reverse_kl": row["reverse_kl"],
    }
  )
)
