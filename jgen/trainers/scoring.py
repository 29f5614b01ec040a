"""Scoring a saved checkpoint after training, apart from the run (score_sde's evaluation mode).

`score_checkpoint(work_dir, evals)` rebuilds the run's trainer from WORKDIR/config.json,
restores its newest intact checkpoint (digests verified, as a resume does) and runs the named
evaluators of jgen/datasets/evaluators.py on it, each drawing its samples through the same
`trainer.sample` call the run's own evaluation uses: a GAN and a flow-matching checkpoint are
scored the same way. `python -m jgen.evaluate --workdir=W --evals=...` is its command.
"""

import ml_collections

from jgen.datasets import evaluators
from jgen.run import checkpoints, trace, workdir
from jgen.trainers import get_trainer


def parse_evals(text: str, num_samples: int) -> dict:
  """'mixture,precision_recall' or 'fd=classifier_fd' -> a config.evals dict (every=1)."""
  evals = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    name, _, kind = item.partition("=")
    evals[name] = {"type": kind or name, "every": 1, "num_samples": num_samples}
  if not evals:
    raise ValueError(f"name at least one evaluator; valid types: {', '.join(evaluators.TYPES)}")
  return evals


def score_checkpoint(work_dir: str, evals: dict) -> dict:
  """{"step", "state_digest", "<name>/<metric>"...} of the newest intact checkpoint in
  `work_dir`, scored by the evaluators `evals` names (a config.evals dict)."""
  stored = workdir.read_config(work_dir)
  if stored is None:
    raise ValueError(f"{work_dir} has no readable config.json: it is not a run's workdir")
  config = ml_collections.ConfigDict(stored)
  config.lock()
  chosen = evaluators.parse(evals)
  trainer, root, data = get_trainer(config.trainer).build(config)
  state, step, verified = checkpoints.restore_newest_intact(
    work_dir, config.train.keep_checkpoints, trainer.init_state(root)
  )
  if not step:
    raise ValueError(f"{work_dir} has no checkpoint after step 0 to score")
  row = {
    "step": step,
    "state_digest": trace.state_digest(trace.part_digests(state)),
    "verified": verified,
  }
  data = trainer.step_data(config, root, data, step, step)
  for evaluator in chosen:
    row.update(evaluator(trainer, state, root, data))
  return row
