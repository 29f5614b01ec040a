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
  members of a population can hold different values (jgen/run/variants.py)."""
  if config.learning_rate <= 0:
    raise ValueError(f"optimizer.learning_rate must be > 0, got {config.learning_rate}")
  factory, _ = registry.choose("optimizer", config.name, _OPTIMIZERS)
  kwargs = {name: config[name] for name in hyperparameter_names(config.name)}
  return optax.inject_hyperparams(factory)(**kwargs) if inject else factory(**kwargs)


LR_DECAYS = ("none", "cosine")


def with_lr_decay(optimizer, train_config) -> optax.GradientTransformation:
  """Scales the updates by a cosine decay to 0 over train.num_steps (`train.lr_decay`).

  Adam's updates have a noise floor set by the learning rate; decaying it lets the last steps
  settle (DGN reconstructions to 40 dB and beyond, a flow's field onto the modes). The decay
  spans num_steps, so a resume may not change it (jgen/run/workdir.py check_resumable).
  """
  decay = train_config.get("lr_decay", "none")
  if decay not in LR_DECAYS:
    raise ValueError(f"unknown train.lr_decay {decay!r}; valid choices: {', '.join(LR_DECAYS)}")
  if decay == "none":
    return optimizer
  schedule = optax.cosine_decay_schedule(1.0, train_config.num_steps)
  return optax.chain(optimizer, optax.scale_by_schedule(schedule))
