"""Optimizers from optax, chosen by name (`config.optimizer.name`)."""

import ml_collections
import optax

from jgen.core import registry

# name -> (factory taking its hyper-parameters by name, the config keys it reads).
_OPTIMIZERS = {
  "adam": (lambda learning_rate, b1, b2: optax.adam(learning_rate, b1=b1, b2=b2), ("b1", "b2")),
  # Plain SGD; with the `full_batch` sampler this is full-batch gradient descent.
  "sgd": (lambda learning_rate: optax.sgd(learning_rate), ()),
  "momentum": (
    lambda learning_rate, momentum: optax.sgd(learning_rate, momentum=momentum),
    ("momentum",),
  ),
}


def hyperparameter_names(name: str) -> tuple[str, ...]:
  """The numeric hyper-parameters optimizer `name` reads from `config.optimizer`."""
  return ("learning_rate", *registry.choose("optimizer", name, _OPTIMIZERS)[1])


def make_optimizer(
  config: ml_collections.ConfigDict, *, inject: bool = False
) -> optax.GradientTransformation:
  """The optimizer; `inject=True` keeps its hyper-parameters in its state, so that the
  members of a population can hold different values (jgen/variants.py)."""
  if config.learning_rate <= 0:
    raise ValueError(f"optimizer.learning_rate must be > 0, got {config.learning_rate}")
  factory, _ = registry.choose("optimizer", config.name, _OPTIMIZERS)
  kwargs = {name: config[name] for name in hyperparameter_names(config.name)}
  return optax.inject_hyperparams(factory)(**kwargs) if inject else factory(**kwargs)
