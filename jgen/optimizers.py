"""Optimizers from optax, chosen by name (`config.optimizer.name`)."""

import ml_collections
import optax

from jgen import registry

_OPTIMIZERS = {
  "adam": lambda c: optax.adam(c.learning_rate, b1=c.b1, b2=c.b2),
  # Plain SGD; with the `full_batch` sampler this is full-batch gradient descent.
  "sgd": lambda c: optax.sgd(c.learning_rate),
  "momentum": lambda c: optax.sgd(c.learning_rate, momentum=c.momentum),
}


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  if config.learning_rate <= 0:
    raise ValueError(f"optimizer.learning_rate must be > 0, got {config.learning_rate}")
  return registry.choose("optimizer", config.name, _OPTIMIZERS)(config)
