"""Training levels warped towards the data: in each objective's own convention (noise
prediction's s = 0 is data; flow matching's and the discriminator flow's t = 1 is data)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dflow, flow
from jgen.losses import denoising
from jgen.trainers import denoise

UNIFORM = jax.random.uniform(jax.random.key(0), (20_000,))


@pytest.mark.parametrize(
  ("objective", "data_end"),
  [("flow_matching", 1.0), ("discriminator_flow", 1.0), ("noise_prediction", 0.0)],
)
def test_power_above_one_puts_the_levels_near_each_objectives_data_end(objective, data_end):
  if objective == "discriminator_flow":
    config = dflow.get_config()
  else:
    config = flow.get_config(f"objective={objective}")
  config.objective.level_power = 3.0
  trainer = denoise.Denoiser.from_config(config)
  levels = np.asarray(denoise.training_levels(trainer, UNIFORM))
  distance_to_data = np.abs(levels - data_end)
  # Uniform levels are 0.5 from the data end on average; power 3 gives 1/4 (E[(1 - u)^3]).
  assert distance_to_data.mean() == pytest.approx(0.25, abs=0.01)
  assert levels.min() >= 0 and levels.max() <= 1


def test_power_one_is_the_same_uniform_levels_bit_for_bit_in_both_conventions():
  expected = 1.0 - (1.0 - UNIFORM)
  for data_end in (0.0, 1.0):
    assert jnp.array_equal(denoising.warp_levels(UNIFORM, 1.0, data_end), expected)
  with pytest.raises(ValueError, match="data_end must be 0 or 1"):
    denoising.warp_levels(UNIFORM, 2.0, 0.5)
