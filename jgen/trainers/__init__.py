"""Trainers, one module per kind of training loop, chosen by `config.trainer`."""

import importlib

from jgen.core import registry

_TRAINERS = {
  "gan": "jgen.trainers.gan",
  "dgn": "jgen.trainers.dgn",
  "dip": "jgen.trainers.dip",
}


def get_trainer(name: str):
  """The trainer module; it has `train_and_evaluate(config, workdir)`."""
  return importlib.import_module(registry.choose("trainer", name, _TRAINERS))
