r"""Trains the experiment a config describes.

  python -m jgen.main --config=configs/gan_setd.py --workdir=runs/gan_setd
  python -m jgen.main --config=configs/gan.py:data=grid25 --config.seed=3 --workdir=runs/x

Rerunning the same command resumes from the latest checkpoint in --workdir. Progress goes to
stderr; the final row, one JSON object, to stdout.
"""

import json

import jax
from absl import flags

from jgen import trainers
from jgen.core import cli, parallel


def define_flags() -> None:
  cli.define_config("Experiment config file.")
  cli.define_workdir("Directory for checkpoints, metrics, plots.")
  flags.DEFINE_bool(
    "multihost", False, "Join the other processes first (jax.distributed): TPU pods, multi-node."
  )


def main() -> None:
  config = flags.FLAGS.config
  if config.get("deterministic", False):
    parallel.enable_gpu_determinism()  # before the first JAX computation starts a backend
  if flags.FLAGS.multihost:
    jax.distributed.initialize()
  trainer = trainers.get_trainer(config.trainer)
  print(json.dumps(trainer.train_and_evaluate(config, flags.FLAGS.workdir)))


if __name__ == "__main__":
  cli.run(main, define_flags)
