"""Maxout layers and the maxout MLP discriminator of PacGAN's 2D experiments.

A maxout unit takes the largest of `pieces` linear functions of its input (Goodfellow et al.
2013); a layer of `width` units is one Dense layer to width * pieces outputs, read as `width`
consecutive groups of `pieces` (the grouping of blocks' LinearMaxout, which PacGAN uses).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jgen.models.mlp import dense_init


def concat_slots(x_SxMxD: jax.Array) -> jax.Array:
  """[S, M, D] -> [S, M*D]: each set's samples side by side in slot order (PacGAN's packing,
  bricks.py compute_losses: concatenate along the feature axis)."""
  return x_SxMxD.reshape(x_SxMxD.shape[0], -1)


class LinearMaxout(nn.Module):
  """x_...xD -> h_...xW: max over `pieces` affine maps per unit; acts on the last axis."""

  width: int
  pieces: int
  initializer: str = "flax"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.Dense(self.width * self.pieces, **dense_init(self.initializer))(x)
    return jnp.max(h.reshape(*h.shape[:-1], self.width, self.pieces), axis=-1)


class MaxoutMLP(nn.Module):
  """`depth` LinearMaxout layers of `width` units, then a linear layer to `out_dim`."""

  width: int
  depth: int
  pieces: int
  out_dim: int = 1
  initializer: str = "flax"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = x
    for _ in range(self.depth):
      h = LinearMaxout(self.width, self.pieces, self.initializer)(h)
    return nn.Dense(self.out_dim, **dense_init(self.initializer))(h)


class MaxoutPack(nn.Module):
  """PacGAN's discriminator: the M samples of a set concatenated in slot order into one input
  [S, M*D], then a maxout MLP -> one logit per set. With M = 1 it is the per-sample maxout D."""

  width: int
  depth: int
  pieces: int
  initializer: str = "flax"

  @nn.compact
  def __call__(self, x_SxMxD: jax.Array) -> jax.Array:
    packed_SxMD = concat_slots(x_SxMxD)
    logits_Sx1 = MaxoutMLP(self.width, self.depth, self.pieces, 1, self.initializer)(packed_SxMD)
    return logits_Sx1[:, 0].astype(jnp.float32)
