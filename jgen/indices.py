r"""Prints a run's data index stream: which training examples each step sees.

  python -m jgen.indices --config=configs/gan_setd.py --from_step=0 --num_steps=5
  python -m jgen.indices --config=configs/gan.py --config.sampler.kind=streak \
      --config.sampler.streak_length=8 --from_step=1000 --num_steps=10000 > stream.jsonl

One JSON object per line: {"step": s, "indices": [...]} for s in [from_step,
from_step + num_steps). `--order_stats` prints instead one JSON object saying how repetitive the
stream is (jgen/data/order_stats.py: repeats between consecutive batches, gaps between draws of
one example, the variance of each batch's mode mix), for a 2D-mixture config:

  python -m jgen.indices --config=configs/gan.py --config.data.num_train=64 \
      --config.train.batch_size=8 --num_steps=10000 --order_stats

The config and its overrides are read exactly as by jgen.main, so the
stream is the one that run trains on (root key from config.seed, N = config.data.num_train,
B = config.train.batch_size).
"""

import json
import sys

import numpy as np
from absl import flags

from jgen.core import cli
from jgen.data import order_stats, samplers


def define_flags() -> None:
  cli.define_config("Training config file, e.g. --config=configs/gan.py.")
  flags.DEFINE_integer("from_step", 0, "First step to print.", lower_bound=0)
  flags.DEFINE_integer("num_steps", 10, "Number of steps to print.", lower_bound=0)
  flags.DEFINE_bool(
    "order_stats", False, "Print how repetitive the stream is (one JSON object) instead."
  )


def main() -> None:
  args = flags.FLAGS
  stream = samplers.index_stream(args.config, args.from_step, args.num_steps)
  if args.order_stats:
    labels, num_modes = order_stats.training_labels(args.config)
    indices = np.stack([row for _, row in stream])
    stats = order_stats.order_stats(indices, labels, num_modes)
    print(
      json.dumps({"sampler": args.config.sampler.to_dict(), "from_step": args.from_step, **stats})
    )
    return
  for step, row in stream:
    sys.stdout.write(json.dumps({"step": step, "indices": row.tolist()}) + "\n")


if __name__ == "__main__":
  cli.run(main, define_flags, quiet=True)
