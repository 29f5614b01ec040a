"""Shared fixtures: a tiny GAN config that trains in seconds on a CPU."""

import pytest

from configs import gan, gan_setd


def tiny_config(setd: bool = False, **overrides):
  """configs/gan.py (or gan_setd.py) shrunk: small nets, 1,000 points, 60 steps."""
  config = (gan_setd if setd else gan).get_config()
  config.data.num_train = 1000
  config.model.generator.width = 32
  config.model.generator.depth = 2
  config.model.discriminator.width = 32
  config.model.discriminator.depth = 2
  config.train.batch_size = 32
  config.train.num_steps = 60
  config.train.steps_per_dispatch = 10
  config.train.log_every = 20
  config.train.eval_every = 40
  config.train.checkpoint_every = 20
  config.eval.num_samples = 500
  # dotted paths, as on the command line; an unknown key raises, as there
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture
def make_tiny_config():
  return tiny_config


@pytest.fixture(scope="session")
def digit_classifier():
  """The cached digit classifier (trained once per machine, ~30 s; JGEN_CACHE_DIR moves it)."""
  from jgen.evals import digit_classifier as classifier_lib

  return classifier_lib.load_digit_classifier()
