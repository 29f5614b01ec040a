"""The discriminator flow's ascent can travel far enough to reach every mode
(`sampling.reach_every_mode`): the derived travel bounds every start-to-mode distance, and an
ascent on a known landscape reaches a far corner mode with it but not with the old budget."""

import functools
import math

import jax.numpy as jnp
import numpy as np
import pytest

from configs import dflow
from jgen.data import mixtures
from jgen.losses import denoising
from jgen.trainers import denoise

OLD = denoising.Sampling("ascent", 200, 0.1, 0.001, True, 1e-3)


def test_the_old_budget_falls_short_of_grid25s_corners():
  # Issue 20: about 4.3 units of travel, while the corners lie 5.7 from the origin.
  assert denoising.ascent_travel(OLD) == pytest.approx(4.3, abs=0.05)
  assert math.hypot(4, 4) > denoising.ascent_travel(OLD)


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_the_travel_bounds_every_likely_start_to_every_mode(name):
  mixture = mixtures.get_mixture(name)
  travel = denoising.reach_travel(mixture.means_Kx2, mixture.sigma)
  radius = denoising.source_radius(0.99)
  # 99% of unit 2D Gaussian starts lie within the radius (Rayleigh CDF, and sampled).
  starts = np.random.default_rng(0).normal(size=(200_000, 2))
  assert np.mean(np.hypot(*starts.T) <= radius) == pytest.approx(0.99, abs=0.002)
  angles = np.linspace(0, 2 * np.pi, 720, endpoint=False)
  ring = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
  farthest = np.linalg.norm(ring[:, None] - mixture.means_Kx2[None], axis=-1).max()
  assert farthest + 3 * mixture.sigma <= travel + 1e-9
  scaled = denoising.with_travel(OLD, travel)
  assert denoising.ascent_travel(scaled) == pytest.approx(travel)
  assert scaled.final_step_size / scaled.step_size == pytest.approx(0.01)


def corner_logit(target, x):
  """A landscape whose only maximum is `target`: the log-odds fall with the distance to it."""
  return -jnp.sqrt(jnp.sum((x - target) ** 2, axis=-1) + 1e-6)


def test_an_ascent_reaches_the_far_corner_with_the_derived_budget_only():
  mixture = mixtures.get_mixture("grid25")
  target = jnp.array([4.0, 4.0])
  start = jnp.array([[-2.0, -2.0]])  # 8.5 from the corner, inside the 99% start radius
  logit = functools.partial(corner_logit, target)
  travel = denoising.reach_travel(mixture.means_Kx2, mixture.sigma)
  reached = denoising.ascend(logit, start, denoising.with_travel(OLD, travel))
  short = denoising.ascend(logit, start, OLD)
  assert float(jnp.linalg.norm(reached[0] - target)) < 0.05
  assert float(jnp.linalg.norm(short[0] - target)) > 4.0


def test_the_trainer_scales_its_ascent_only_when_asked():
  config = dflow.get_config("data=grid25")
  assert denoise.Denoiser.from_config(config).sampling.step_size == pytest.approx(0.1)
  config.sampling.reach_every_mode = True
  sampling = denoise.Denoiser.from_config(config).sampling
  mixture = mixtures.get_mixture("grid25")
  assert denoising.ascent_travel(sampling) == pytest.approx(
    denoising.reach_travel(mixture.means_Kx2, mixture.sigma)
  )
  flow_config = dflow.get_config()
  flow_config.sampling.reach_every_mode = True
  flow_config.sampling.normalize = False
  with pytest.raises(ValueError, match="reach_every_mode scales a normalized ascent"):
    denoise.Denoiser.from_config(flow_config)
