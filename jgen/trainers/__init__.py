"""Trainers, one module per kind of training, chosen by `config.trainer`.

A trainer module has `build(config) -> (trainer, root, data)` and
`train_and_evaluate(config, workdir)`; its trainer object implements jgen/run/interface.py's
`Trainer` (subclassing `TrainerDefaults` for the optional members) for the one run loop in
jgen/run/loop.py.
Trainers import run, collapse, datasets, models, losses, evals and core; the traced ones
(gan, denoise) pass the run loop a collapse.recorder.CaseRecorder. Nothing below them imports a
trainer (replays, studies and commands sit above).
"""

import importlib

from jgen.core import registry

_TRAINERS = {
  "gan": "jgen.trainers.gan",
  "dgn": "jgen.trainers.dgn",
  "dip": "jgen.trainers.dip",
  "denoise": "jgen.trainers.denoise",
}


def get_trainer(name: str):
  """The trainer module; it has `train_and_evaluate(config, workdir)`."""
  return importlib.import_module(registry.choose("trainer", name, _TRAINERS))
