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

from absl import flags

from jgen.core import cli
from jgen.data import samplers


def define_flags() -> None:
  cli.define_config("Training config file, e.g. --config=configs/gan.py.")
  flags.DEFINE_integer("from_step", 0, "First step to print.", lower_bound=0)
  flags.DEFINE_integer("num_steps", 10, "Number of steps to print.", lower_bound=0)


def main() -> None:
  stream = samplers.index_stream(flags.FLAGS.config, flags.FLAGS.from_step, flags.FLAGS.num_steps)
  for step, row in stream:
    sys.stdout.write(json.dumps({"step": step, "indices": row.tolist()}) + "\n")


if __name__ == "__main__":
  cli.run(main, define_flags, quiet=True)
