"""Denoisers: time-conditioned networks, the discriminator flow's D, and fixed-step ODE solvers.

  TimeMLP        (x_BxD, t_B) -> B x D: the 2D velocity / noise predictor. t enters as
                 sinusoidal features concatenated to x and added again to every hidden layer.
  TimeConvNet    (x_BxHxWxC, t_B) -> B x H x W x C: a small U-Net for 8x8 to 32x32 images
                 (one halving, a skip connection, t added to every block's channels).
  Critic         x -> logit_B with no time input: the discriminator flow's D, an MLP for 2D
                 and a strided conv net for images.
  LevelCritic    (x_BxD, t_B) -> logit_B: the level-conditioned D (2D points).
  integrate      Euler or Heun on dx/dt = field(x, t) over a given grid of times.

Activations are SiLU, so that D's input gradient, which the discriminator flow follows, is
continuous (a ReLU network's is piecewise constant and never settles at a maximum).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jgen.core import registry

SOLVERS = ("euler", "heun")


def time_features(t_B: jax.Array, dim: int) -> jax.Array:
  """Sinusoids of 1000 t at log-spaced frequencies (Ho et al. 2020), float32 [B, dim]."""
  half = dim // 2
  frequencies = jnp.exp(-math.log(10_000.0) * jnp.arange(half) / max(half - 1, 1))
  angles = 1000.0 * t_B[:, None] * frequencies[None]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def _time_mlp_body(module, x_BxD: jax.Array, t_B: jax.Array, outputs: int) -> jax.Array:
  """TimeMLP's layers inside `module`'s compact call (its submodules, named in creation order,
  are the module's own): x_BxD, t_B -> B x outputs."""
  # A small embedding (time_dim), projected per layer: a width x width projection per layer
  # would cost as much as the layer itself.
  embedding = nn.silu(nn.Dense(module.time_dim)(time_features(t_B, module.time_dim)))
  h = x_BxD
  for _ in range(module.depth):
    h = nn.silu(nn.Dense(module.width)(h) + nn.Dense(module.width)(embedding))
  return nn.Dense(outputs)(h)


class TimeMLP(nn.Module):
  """x_BxD and t_B -> B x D: `depth` SiLU layers of `width`, t added to each."""

  width: int
  depth: int
  time_dim: int = 32

  @nn.compact
  def __call__(self, x_BxD: jax.Array, t_B: jax.Array) -> jax.Array:
    return _time_mlp_body(self, x_BxD, t_B, x_BxD.shape[-1])


class LevelCritic(nn.Module):
  """x_BxD and t_B -> logit_B: TimeMLP's body with one output, the level-conditioned D of the
  level-ratio objective (jgen/losses/level_ratio.py)."""

  width: int
  depth: int
  time_dim: int = 32

  @nn.compact
  def __call__(self, x_BxD: jax.Array, t_B: jax.Array) -> jax.Array:
    return _time_mlp_body(self, x_BxD, t_B, 1)[:, 0]


class TimeConvNet(nn.Module):
  """x_BxHxWxC and t_B -> B x H x W x C: conv blocks at full and half resolution, a skip."""

  width: int
  time_dim: int = 32

  @nn.compact
  def __call__(self, x: jax.Array, t_B: jax.Array) -> jax.Array:
    if x.shape[1] % 2 or x.shape[2] % 2:
      raise ValueError(f"TimeConvNet halves the image once; its sides must be even, got {x.shape}")
    embedding = nn.silu(nn.Dense(4 * self.width)(time_features(t_B, self.time_dim)))

    def block(h, channels, strides=(1, 1)):
      h = nn.Conv(channels, (3, 3), strides=strides)(h)
      h = h + nn.Dense(channels)(embedding)[:, None, None, :]
      return nn.silu(nn.Conv(channels, (3, 3))(nn.silu(h)))

    full = block(x, self.width)
    half = block(full, 2 * self.width, strides=(2, 2))
    half = block(half, 2 * self.width)
    up = nn.ConvTranspose(self.width, (2, 2), strides=(2, 2))(half)
    h = block(jnp.concatenate([up, full], axis=-1), self.width)
    return nn.Conv(x.shape[-1], (3, 3))(h)


class Critic(nn.Module):
  """x -> logit_B, no time input: an MLP on 2D points, strided convs on images."""

  width: int
  depth: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = x
    if x.ndim == 4:
      for level in range(self.depth):
        strides = (2, 2) if level and h.shape[1] % 2 == 0 and h.shape[1] > 4 else (1, 1)
        h = nn.silu(nn.Conv(self.width * 2 ** min(level, 2), (3, 3), strides=strides)(h))
      h = h.reshape(h.shape[0], -1)
    for _ in range(self.depth if x.ndim == 2 else 1):
      h = nn.silu(nn.Dense(self.width)(h))
    return nn.Dense(1)(h)[:, 0]


def make_denoiser(model_config, sample_shape: tuple) -> nn.Module:
  """The time-conditioned network for `sample_shape`: TimeMLP for points, TimeConvNet else."""
  if model_config.width < 1 or model_config.depth < 1:
    raise ValueError(
      f"model.width and model.depth must be >= 1, got {model_config.width}, {model_config.depth}"
    )
  if len(sample_shape) == 1:
    return TimeMLP(model_config.width, model_config.depth, model_config.time_dim)
  return TimeConvNet(model_config.width, model_config.time_dim)


def make_critic(model_config) -> nn.Module:
  if model_config.width < 1 or model_config.depth < 1:
    raise ValueError(
      f"model.width and model.depth must be >= 1, got {model_config.width}, {model_config.depth}"
    )
  return Critic(model_config.width, model_config.depth)


def integrate(field, x: jax.Array, times: jax.Array, method: str) -> jax.Array:
  """x at times[-1], from x at times[0], by Euler or Heun steps on the grid `times`.

  field(x, t_B) is dx/dt. Euler evaluates it once per step, Heun (the explicit trapezoid
  rule, second order) twice. The grid may run forward or backward in time.
  """
  registry.choose("sampling.method", method, dict.fromkeys(SOLVERS))

  def at(t):
    return jnp.full(x.shape[:1], t, jnp.float32)

  def step(i, x):
    t, t_next = times[i], times[i + 1]
    slope = field(x, at(t))
    guess = x + (t_next - t) * slope
    if method == "euler":
      return guess
    return x + (t_next - t) * 0.5 * (slope + field(guess, at(t_next)))

  return jax.lax.fori_loop(0, len(times) - 1, step, x)
