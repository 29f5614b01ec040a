"""One sampling call for every generator family: trainer.sample(state, key, n)
(jgen/run/interface.py), and the named evaluators that score any family through it."""

import numpy as np
import pytest

from configs import dflow, dgn, dip, flow, gan
from jgen.core import rng
from jgen.trainers import get_trainer


def _small(make, arg="runlocal", **overrides):
  config = make(arg)
  config.update_from_flattened_dict(overrides)
  return config


FAMILIES = {
  "gan": lambda: _small(gan.get_config),
  "flow_matching": lambda: _small(flow.get_config, **{"sampling.num_steps": 2}),
  "noise_prediction": lambda: _small(
    flow.get_config, "runlocal,objective=noise_prediction", **{"sampling.num_steps": 2}
  ),
  "discriminator_flow": lambda: _small(dflow.get_config, **{"sampling.num_steps": 2}),
  "dgn": lambda: _small(dgn.get_config, **{"data.num_train": 20}),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_generator_family_draws_n_samples_through_the_same_call(family):
  config = FAMILIES[family]()
  trainer, root, _ = get_trainer(config.trainer).build(config)
  state = trainer.init_state(root)
  samples = trainer.sample(state, root, 7)
  assert samples.shape[0] == 7 and np.isfinite(samples).all()
  np.testing.assert_array_equal(samples, trainer.sample(state, root, 7))  # the key decides
  assert not np.array_equal(samples, trainer.sample(state, rng.root_key(12345), 7))


def test_evaluation_scores_the_samples_of_the_sampling_call():
  config = FAMILIES["gan"]()
  trainer, root, data = get_trainer("gan").build(config)
  state = trainer.init_state(root)
  shown, _ = trainer.evaluate(state, root, data)
  np.testing.assert_array_equal(shown, trainer.sample(state, root, config.eval.num_samples))


def test_dip_says_it_has_no_sampler():
  config = _small(dip.get_config)
  trainer, root, _ = get_trainer("dip").build(config)
  with pytest.raises(NotImplementedError, match="no prior to draw new samples from"):
    trainer.sample(None, root, 4)
