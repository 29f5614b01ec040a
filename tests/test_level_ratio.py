"""The level-conditioned discriminator and annealed Langevin (jgen/losses/level_ratio.py), on a
Gaussian whose every level's density is known: the exact log ratios must lower the loss below
chance, telescope into each level's log density, and sample the data."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dflow
from jgen.losses import denoising, level_ratio
from jgen.trainers import denoise

MEAN, STD, LEVELS = jnp.array([2.0, -1.0]), 0.3, 8


def gaussian_log_density(x, t):
  """log N(x; t MEAN, ((1 - t)^2 + t^2 STD^2) I): level t of the flow-matching path from unit
  noise to N(MEAN, STD^2 I)."""
  variance = (1.0 - t) ** 2 + (t * STD) ** 2
  t = jnp.reshape(t, (-1, 1))
  variance = jnp.reshape(variance, (-1, 1))
  return jnp.sum(-0.5 * (x - t * MEAN) ** 2 / variance - 0.5 * jnp.log(variance), axis=-1)


def exact_logit(x, t_B):
  """The optimal D(x, t_j): log p_{t_j + 1/K}(x) - log p_{t_j}(x)."""
  return gaussian_log_density(x, t_B + 1.0 / LEVELS) - gaussian_log_density(x, t_B)


def test_levels_fall_in_their_pair_and_the_data_end_in_the_last():
  index = level_ratio.level_index(jnp.array([0.0, 0.124, 0.125, 0.99, 1.0]), LEVELS)
  assert index.tolist() == [0, 0, 1, 7, 7]


def test_the_exact_log_ratio_beats_chance_and_its_negation_loses():
  key_noise, key_data, key_t = jax.random.split(jax.random.key(0), 3)
  x0 = jax.random.normal(key_noise, (4000, 2))
  x1 = MEAN + STD * jax.random.normal(key_data, (4000, 2))
  t = jax.random.uniform(key_t, (4000,))
  loss, accuracy = level_ratio.level_ratio_loss(exact_logit, x0, x1, t, LEVELS)
  flipped, _ = level_ratio.level_ratio_loss(lambda x, t: -exact_logit(x, t), x0, x1, t, LEVELS)
  chance, _ = level_ratio.level_ratio_loss(lambda x, t: jnp.zeros(len(x)), x0, x1, t, LEVELS)
  assert float(chance) == pytest.approx(np.log(2.0))
  assert float(loss) < float(chance) - 0.01 < float(flipped)
  assert float(accuracy) > 0.55


def test_the_logits_telescope_into_each_levels_log_density():
  x = jax.random.normal(jax.random.key(1), (5, 2)) + MEAN
  for k in (0, 3, LEVELS):
    total = level_ratio.log_density(exact_logit, x, k, LEVELS)
    expected = gaussian_log_density(x, jnp.full((5,), k / LEVELS)) - gaussian_log_density(
      x, jnp.zeros((5,))
    )
    expected = jnp.sum(expected) - 0.5 * jnp.sum(x**2)
    assert float(total) == pytest.approx(float(expected), rel=1e-4, abs=1e-3)


def test_annealed_langevin_with_the_exact_ratios_samples_the_data():
  sampling = denoising.Sampling(
    "langevin", num_steps=30, step_size=0.1, final_step_size=STD, num_levels=LEVELS
  )
  noise = jax.random.normal(jax.random.key(2), (3000, 2))
  samples = np.asarray(
    level_ratio.annealed_langevin(exact_logit, noise, jax.random.key(3), sampling)
  )
  np.testing.assert_allclose(samples.mean(axis=0), MEAN, atol=0.05)
  np.testing.assert_allclose(samples.std(axis=0), STD, rtol=0.15)
  # without the telescoped ratios (D = 0) Langevin keeps the unit Gaussian: the test can fail
  still_noise = level_ratio.annealed_langevin(
    lambda x, t: jnp.zeros(len(x)), noise, jax.random.key(3), sampling
  )
  assert np.abs(np.asarray(still_noise).mean(axis=0) - MEAN).max() > 1.0
  assert dataclasses.replace(sampling).evaluations_per_sample("level_ratio") == 30 * LEVELS**2


def test_level_ratio_needs_points_and_two_levels():
  config = dflow.get_config("objective=level_ratio,runlocal")
  with config.unlocked():
    config.objective.num_levels = 1
  with pytest.raises(ValueError, match="num_levels >= 2"):
    denoise.Denoiser.from_config(config)
