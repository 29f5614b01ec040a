r"""Prints a run's data index stream: which training examples each step sees.

  python -m jgen.indices --config=configs/gan_setd.py --from_step=0 --num_steps=5
  python -m jgen.indices --config=configs/gan.py --config.sampler.kind=streak \
      --config.sampler.streak_length=8 --from_step=1000 --num_steps=10000 > stream.jsonl

One JSON object per line: {"step": s, "indices": [...]} for s in [from_step,
from_step + num_steps). The config and its overrides are read exactly as by jgen.main, so the
stream is the one that run trains on (root key from config.seed, N = config.data.num_train,
B = config.train.batch_size).
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jgen.core import config as config_lib
from jgen.core import rng
from jgen.data import samplers

_FROM_STEP = flags.DEFINE_integer("from_step", 0, "First step to print.", lower_bound=0)
_NUM_STEPS = flags.DEFINE_integer("num_steps", 10, "Number of steps to print.", lower_bound=0)

# Steps computed per dispatch: one compiled shape for any --num_steps; big enough that 10k
# steps take a handful of dispatches.
CHUNK_STEPS = 1024


def index_rows(sample: samplers.Sampler, root_key, from_step: int, num_steps: int):
  """Yields (step, int32[global_batch] numpy row) for steps [from_step, from_step + num_steps)."""
  sample_steps = jax.jit(jax.vmap(sample, in_axes=(None, 0)))
  chunk = min(CHUNK_STEPS, max(num_steps, 1))
  for start in range(from_step, from_step + num_steps, chunk):
    stop = min(start + chunk, from_step + num_steps)
    # Pad the last chunk with repeats of its last step so that it reuses the compiled shape.
    steps = np.minimum(np.arange(start, start + chunk), stop - 1).astype(np.int32)
    rows = np.asarray(sample_steps(root_key, jnp.asarray(steps)))
    yield from zip(range(start, stop), rows[: stop - start], strict=True)


def _fail(message: str) -> None:
  print(f"jgen.indices: {message}", file=sys.stderr)
  sys.exit(1)


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; use --config, --from_step, --num_steps")
  config = flags.FLAGS.config
  if config is None:
    _fail("--config is required, e.g. --config=configs/gan.py")
  if config.data.get("fresh_samples", False):
    _fail(
      "config.data.fresh_samples=True draws new data every step, so there is no index "
      "stream to print; set --config.data.fresh_samples=False"
    )
  from_step, num_steps = _FROM_STEP.value, _NUM_STEPS.value
  if from_step + num_steps > 2**31 - 1:
    _fail(f"steps must stay below 2**31; got --from_step={from_step} --num_steps={num_steps}")
  try:
    sample = samplers.make_sampler(
      config.sampler,
      num_examples=config.data.num_train,
      batch_size=config.train.batch_size,
      num_steps=from_step + num_steps,
    )
  except ValueError as error:
    _fail(str(error))
  root_key = rng.root_key(config.seed)
  try:
    for step, row in index_rows(sample, root_key, from_step, num_steps):
      sys.stdout.write(json.dumps({"step": step, "indices": row.tolist()}) + "\n")
    sys.stdout.flush()
  except BrokenPipeError:
    # `... | head` closed the pipe: the reader has what it wanted.
    sys.stderr.close()
    sys.exit(0)


if __name__ == "__main__":
  # `config` is defined here, not at import: several tools define it, and tests import them
  # side by side.
  config_flags.DEFINE_config_file("config", None, "Training config file.")
  app.run(main, flags_parser=config_lib.flags_parser("jgen.indices"))
