"""Metrics of reconstructed images: PSNR, sharpness, and a fixed random conv net's features
(what the perceptual loss and the DGN sample metrics compare)."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn


def psnr(x, reference, max_value: float = 1.0, axis=(-3, -2, -1)) -> jax.Array:
  """Per-image PSNR in dB of x against reference, both [..., H, W, C] on [0, max_value].

  A perfect match is capped at 100 dB (PSNR is infinite there).
  """
  mse = jnp.mean(jnp.square(x - reference), axis=axis)
  return jnp.minimum(10.0 * jnp.log10(max_value**2 / jnp.maximum(mse, 1e-10)), 100.0)


def sharpness(x_NxHxWxC) -> jax.Array:
  """Per-image mean squared finite-difference gradient: blur lowers it."""
  dx = jnp.diff(x_NxHxWxC, axis=-2)
  dy = jnp.diff(x_NxHxWxC, axis=-3)
  return jnp.mean(jnp.square(dx), axis=(-3, -2, -1)) + jnp.mean(jnp.square(dy), axis=(-3, -2, -1))


class RandomConvFeatures(nn.Module):
  """A fixed random conv net (never trained): the structure, not learned features, that a
  perceptual distance sees (cf. Deep Image Prior). Features of every layer, concatenated."""

  channels: tuple = (32, 64)
  pooled: bool = False  # per-channel spatial means (96 numbers) instead of every activation

  @nn.compact
  def __call__(self, x):
    features = []
    for channels in self.channels:
      x = nn.relu(nn.Conv(channels, (3, 3))(x))
      if self.pooled:
        features.append(x.mean(axis=(1, 2)))
      else:
        # Each layer's features are scaled by 1/sqrt(size) so no layer dominates the distance.
        features.append(x.reshape(x.shape[0], -1) / jnp.sqrt(x[0].size))
    return jnp.concatenate(features, axis=-1)


@functools.lru_cache(maxsize=8)  # a few shapes per process; each holds a small net
def random_conv_features(image_shape: tuple, seed: int = 0, pooled: bool = False) -> Callable:
  """features(x [N, *image_shape]) -> [N, F] of a random conv net fixed by `seed` (pooled:
  the same net's per-channel means, small enough for a Frechet distance)."""
  net = RandomConvFeatures(pooled=pooled)
  with jax.ensure_compile_time_eval():
    params = net.init(jax.random.key(seed), jnp.zeros((1, *image_shape), jnp.float32))
  return functools.partial(net.apply, params)
