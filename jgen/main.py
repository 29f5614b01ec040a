r"""Trains the experiment a config describes.

  python -m jgen.main --config=configs/gan_setd.py --workdir=runs/gan_setd
  python -m jgen.main --config=configs/gan.py:data=grid25 --config.seed=3 --workdir=runs/x

Rerunning the same command resumes from the latest checkpoint in --workdir.
"""

import json
import os
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from jgen import trainers
from jgen.core import config as config_lib
from jgen.core import parallel

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, plots.")
_MULTIHOST = flags.DEFINE_bool(
  "multihost", False, "Join the other processes first (jax.distributed): TPU pods, multi-node."
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = flags.FLAGS.config
  if config.get("deterministic", False):
    parallel.enable_gpu_determinism()  # before the first JAX computation starts a backend
  config_lib.setup_logging()
  if _MULTIHOST.value:
    jax.distributed.initialize()
  try:
    final = trainers.get_trainer(config.trainer).train_and_evaluate(config, _WORKDIR.value)
  except (ValueError, RuntimeError) as error:
    if os.environ.get("JGEN_DEBUG"):
      raise
    print(f"jgen: error: {error}", file=sys.stderr)
    sys.exit(1)
  print(json.dumps(final))


if __name__ == "__main__":
  # `config` is defined here, not at import: several tools define it, and tests import them
  # side by side.
  config_flags.DEFINE_config_file("config", None, "Experiment config file.")
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main, flags_parser=config_lib.flags_parser("jgen.main"))
