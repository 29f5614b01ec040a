"""MLPs: the generator and the per-sample discriminator of the PacGAN 2D protocol."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jgen.models import spectral_norm


class MLP(nn.Module):
  """`depth` hidden ReLU layers of `width`, then a linear layer to `out_dim` (none if None).

  Dense acts on the last axis, so an MLP applies per sample to x_SxMxD as well as to x_BxD.
  power_iterations >= 1 spectrally normalizes every kernel (the conv discriminators' heads).
  """

  width: int
  depth: int
  out_dim: int | None = None
  power_iterations: int = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = spectral_norm.wrap(self, nn.Dense, self.power_iterations)
    h = x
    for _ in range(self.depth):
      h = nn.relu(dense(self.width)(h))
    if self.out_dim is not None:
      h = dense(self.out_dim)(h)
    return h


class SampleDiscriminator(nn.Module):
  """The per-sample baseline: sets of one sample, x_Sx1xD -> logits_S."""

  width: int
  depth: int

  @nn.compact
  def __call__(self, x_SxMxD: jax.Array) -> jax.Array:
    if x_SxMxD.shape[1] != 1:
      raise ValueError(
        f"the per-sample discriminator sees sets of one sample, got x of shape {x_SxMxD.shape}"
      )
    logits_Sx1 = MLP(self.width, self.depth, out_dim=1)(x_SxMxD[:, 0])
    return logits_Sx1[:, 0].astype(jnp.float32)
