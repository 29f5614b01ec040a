r"""The sampling-order study: does the order of data (and the optimizer) decide collapse?

A grid of cells, sampler kind x optimizer x discriminator x data, each a population of
P seeds trained in one program; the report gives each cell's collapse rate with a 95%
Wilson interval and tests, within each (data, discriminator, optimizer) block, whether
the sampling orders differ.

  python -m jgen.study --config=configs/study_sampling_order.py --workdir=runs/study
  python -m jgen.study --config=configs/study_sampling_order.py:runlocal --workdir=runs/study_local

The full grid (72 cells x 16 seeds x 30k steps, 100k points; full-batch cells step over all
100k points) is meant for a GPU or TPU. `runlocal` shrinks everything to run the whole
pipeline on a 2-core CPU in about 15 minutes: its numbers test the code, not the question.

`study.settings` says what each name of an axis sets in the base config, so
`--config.study.settings.optimizers.adam.optimizer.learning_rate=2e-4` changes one optimizer
of the grid. The optimizers (OPTIMIZERS below) are untuned and pinned; Adam's are PacGAN's.
"""

import ml_collections

from configs import gan
from jgen.core import config as config_lib

SAMPLERS = {
  "epoch_shuffle": {"sampler": {"kind": "epoch_shuffle"}},
  "shuffle_once": {"sampler": {"kind": "shuffle_once"}},
  "with_replacement": {"sampler": {"kind": "with_replacement"}},
  "streak2": {"sampler": {"kind": "streak", "streak_length": 2}},
  "streak8": {"sampler": {"kind": "streak", "streak_length": 8}},
  "full_batch": {"sampler": {"kind": "full_batch"}},
}
OPTIMIZERS = {
  "adam": {"optimizer": {"name": "adam", "learning_rate": 1e-4, "b1": 0.8}},
  "momentum": {"optimizer": {"name": "momentum", "learning_rate": 1e-3}},
  "sgd": {"optimizer": {"name": "sgd", "learning_rate": 1e-2}},
}
DISCRIMINATORS = {
  "per_sample": {"model": {"discriminator": {"name": "mlp"}, "set_size": 1}},
  "set": {"model": {"discriminator": {"name": "deepsets"}, "set_size": 4}},
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False)
  c = ml_collections.ConfigDict()
  c.study_kind = "sampling_order"  # the study, by name (jgen/studies/__init__.py)
  c.base = gan.base_config(
    config_lib.parse_arg(None, data="ring8", runlocal=False), discriminator="mlp", set_size=1
  )
  c.base.collapse.trace = False  # populations are not traced
  # Measured on one device; its published numbers need the same split (decisions.md).
  c.base.population.devices = 1
  c.base.train.eval_every = 2500
  c.base.train.log_every = 2500
  c.base.train.checkpoint_every = 5000

  c.study = ml_collections.ConfigDict()
  # Comma-separated names, so that `--config.study.samplers=epoch_shuffle,streak8` works.
  c.study.samplers = "epoch_shuffle,shuffle_once,with_replacement,streak2,streak8,full_batch"
  c.study.optimizers = "adam,momentum,sgd"
  c.study.discriminators = "per_sample,set"
  c.study.data = "ring8,grid25"
  c.study.population = 16
  c.study.settings = ml_collections.ConfigDict(
    {"samplers": SAMPLERS, "optimizers": OPTIMIZERS, "discriminators": DISCRIMINATORS}
  )

  if arg.runlocal:
    c.study.population = 2
    c.base.data.num_train = 500
    c.base.model.generator.width = 64
    c.base.model.discriminator.width = 64
    c.base.train.num_steps = 600
    c.base.train.steps_per_dispatch = 300
    c.base.train.eval_every = 300
    c.base.train.log_every = 300
    c.base.train.checkpoint_every = 300
    c.base.eval.num_samples = 500
  c.lock()
  return c
