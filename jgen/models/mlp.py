"""MLPs: the generator and the per-sample discriminator of the PacGAN 2D protocol.

Also the generator's options for PacGAN's official code: BatchNorm after every hidden linear
layer (which then has no bias), and N(0, 0.02) weights with zero biases.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jgen.models import spectral_norm

# Weight initializers by name: Flax's defaults (lecun normal, zero bias), or the isotropic
# Gaussian of std 0.02 with zero biases that PacGAN's config.py sets for every layer.
INITS = ("flax", "normal_0.02")


def dense_init(name: str) -> dict:
  """nn.Dense keyword arguments for the initializer `name` (one of INITS)."""
  if name == "flax":
    return {}
  if name == "normal_0.02":
    return {"kernel_init": nn.initializers.normal(0.02), "bias_init": nn.initializers.zeros}
  raise ValueError(f"unknown initializer {name!r}; valid: {', '.join(INITS)}")


class BatchNorm(nn.Module):
  """Batch normalization as blocks computes it (the library of PacGAN's official code).

  Training (`train=True`): each group of samples along the second-to-last axis is normalized
  by its own batch mean and stdev = sqrt(var + epsilon), so x_GxBxF with G pack slots gives G
  independent batch statistics, as when the generator runs once per slot. The population
  statistics (collection "batch_stats": mean, stdev) move towards the mean over groups of the
  batch statistics: p <- (1 - momentum) p + momentum * mean_g(batch_g).
  Evaluation (`train=False`): (x - population mean) / population stdev, no epsilon.
  """

  momentum: float = 0.05
  epsilon: float = 1e-4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,))
    shift = self.param("shift", nn.initializers.zeros, (features,))
    mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
    stdev = self.variable("batch_stats", "stdev", jnp.ones, (features,), jnp.float32)
    if train:
      batch_mean = jnp.mean(x, axis=-2, keepdims=True)
      batch_stdev = jnp.sqrt(
        jnp.mean(jnp.square(x - batch_mean), axis=-2, keepdims=True) + self.epsilon
      )
      if not self.is_initializing():
        groups = tuple(range(x.ndim - 1))
        mean.value = (1 - self.momentum) * mean.value + self.momentum * jnp.mean(batch_mean, groups)
        stdev.value = (1 - self.momentum) * stdev.value + self.momentum * jnp.mean(
          batch_stdev, groups
        )
    else:
      batch_mean, batch_stdev = mean.value, stdev.value
    return (x - batch_mean) / batch_stdev * scale + shift


class MLP(nn.Module):
  """`depth` hidden ReLU layers of `width`, then a linear layer to `out_dim` (none if None).

  Dense acts on the last axis, so an MLP applies per sample to x_SxMxD as well as to x_BxD.
  power_iterations >= 1 spectrally normalizes every kernel (the conv discriminators' heads).
  batch_norm puts a BatchNorm between every hidden linear layer (then without bias) and its
  ReLU; its statistics are per group along the second-to-last axis (see BatchNorm).
  """

  width: int
  depth: int
  out_dim: int | None = None
  power_iterations: int = 0
  batch_norm: bool = False
  initializer: str = "flax"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    dense = spectral_norm.wrap(self, nn.Dense, self.power_iterations)
    init = dense_init(self.initializer)
    h = x
    for _ in range(self.depth):
      if self.batch_norm:
        h = nn.relu(BatchNorm()(dense(self.width, use_bias=False, **init)(h), train))
      else:
        h = nn.relu(dense(self.width, **init)(h))
    if self.out_dim is not None:
      h = dense(self.out_dim, **init)(h)
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
