"""DCGAN-style convolutional generator and (set) discriminators for images 8x8 to 64x64.

Images are float [.., H, W, C] in [0, 1]: G ends in a sigmoid, D rescales to [-1, 1].
Resolution ladder: H is halved while it is even and above 4 (8 -> 4, 28 -> 7, 32 -> 4,
64 -> 4); G upsamples from that base by 2x2 stride-2 transposed convs, D downsamples to it by
3x3 stride-2 convs, doubling channels at each halving (DCGAN). No batch norm: it would couple the
samples of a batch (the thing a set-discriminator study must control), and it would put
mutable statistics in the train state.

Discriminators map x_SxMxHxWxC -> logits_S, one logit per set, like the 2D ones
(jgen/models/set_discriminators.py), and reuse their pooling: per-sample conv features, then
moments (DeepSets), attention (PMA), minibatch-stddev, or PacGAN packing on the channels.

Every discriminator takes `power_iterations`: 0 (the default) leaves it as it was; n >= 1
spectrally normalizes every kernel it has (convs, dense layers, heads, attention projections)
with n stateless power-iteration steps (jgen/models/spectral_norm.py), params unchanged.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jgen.models import set_discriminators as sets
from jgen.models import spectral_norm
from jgen.models.mlp import MLP

LEAK = 0.2


def num_halvings(size: int) -> int:
  halvings = 0
  while size % 2 == 0 and size > 4:
    size //= 2
    halvings += 1
  return halvings


def _check_square(shape) -> None:
  if len(shape) != 3 or shape[0] != shape[1] or shape[0] < 4:
    raise ValueError(f"conv models take square images [H, H, C] with H >= 4, got {shape}")


class ConvGenerator(nn.Module):
  """z_BxZ -> x_BxHxWxC in [0, 1]: dense to the base grid, strided transposed convs up."""

  sample_shape: tuple[int, int, int]
  width: int  # channels at full resolution; doubled at each coarser level

  @nn.compact
  def __call__(self, z_BxZ: jax.Array) -> jax.Array:
    _check_square(self.sample_shape)
    size, _, channels = self.sample_shape
    levels = num_halvings(size)
    base = size // 2**levels
    h = nn.Dense(base * base * self.width * 2**levels)(z_BxZ)
    h = nn.relu(h).reshape(-1, base, base, self.width * 2**levels)
    for level in reversed(range(levels)):
      # Kernel 2, stride 2: each input pixel writes its own 2x2 block (no overlap, so no
      # checkerboard), at a quarter of the FLOPs of DCGAN's 4x4 kernel; CPU time matters here.
      h = nn.relu(nn.ConvTranspose(self.width * 2**level, (2, 2), strides=(2, 2))(h))
    return nn.sigmoid(nn.Conv(channels, (3, 3))(h))


class ConvFeatures(nn.Module):
  """x_NxHxWxC -> features_NxF: strided 3x3 convs down to the base grid, then a dense layer."""

  width: int
  feature_dim: int
  power_iterations: int = 0  # spectral normalization of every kernel; 0: none

  @nn.compact
  def __call__(self, x_NxHxWxC: jax.Array) -> jax.Array:
    conv = spectral_norm.wrap(self, nn.Conv, self.power_iterations)
    dense = spectral_norm.wrap(self, nn.Dense, self.power_iterations)
    h = x_NxHxWxC * 2.0 - 1.0
    h = nn.leaky_relu(conv(self.width, (3, 3))(h), LEAK)
    for level in range(num_halvings(x_NxHxWxC.shape[1])):
      h = nn.leaky_relu(conv(self.width * 2 ** (level + 1), (3, 3), strides=(2, 2))(h), LEAK)
    return nn.leaky_relu(dense(self.feature_dim)(h.reshape(h.shape[0], -1)), LEAK)


def _features(d: nn.Module) -> ConvFeatures:
  """The conv stack of discriminator d, with d's width, feature size and normalization."""
  return ConvFeatures(d.width, d.feature_dim, d.power_iterations)


def _per_sample_features(module: ConvFeatures, x_SxMxHxWxC: jax.Array) -> jax.Array:
  num_sets, set_size = x_SxMxHxWxC.shape[:2]
  features = module(x_SxMxHxWxC.reshape(num_sets * set_size, *x_SxMxHxWxC.shape[2:]))
  return features.reshape(num_sets, set_size, -1)


class ConvSampleDiscriminator(nn.Module):
  """The per-sample baseline: sets of one image, conv features -> logit."""

  width: int
  feature_dim: int
  power_iterations: int = 0

  @nn.compact
  def __call__(self, x_SxMxHxWxC: jax.Array) -> jax.Array:
    if x_SxMxHxWxC.shape[1] != 1:
      raise ValueError(f"the per-sample discriminator sees sets of one, got {x_SxMxHxWxC.shape}")
    h_Sx1xF = _per_sample_features(_features(self), x_SxMxHxWxC)
    dense = spectral_norm.wrap(self, nn.Dense, self.power_iterations)
    return dense(1)(h_Sx1xF[:, 0])[:, 0].astype(jnp.float32)


class ConvDeepSets(nn.Module):
  """Per-image conv features pooled by the mean and central moments, then an MLP -> logit."""

  width: int
  feature_dim: int
  num_moments: int
  power_iterations: int = 0

  @nn.compact
  def __call__(self, x_SxMxHxWxC: jax.Array) -> jax.Array:
    h_SxMxF = _per_sample_features(_features(self), x_SxMxHxWxC)
    pooled = sets.central_moments(h_SxMxF, self.num_moments)
    rho = MLP(self.feature_dim, 1, out_dim=1, power_iterations=self.power_iterations, name="rho")
    return rho(pooled)[:, 0].astype(jnp.float32)


class ConvAttention(nn.Module):
  """Per-image conv features pooled by a learned query's multi-head attention (PMA)."""

  width: int
  feature_dim: int
  num_heads: int
  power_iterations: int = 0

  @nn.compact
  def __call__(self, x_SxMxHxWxC: jax.Array) -> jax.Array:
    h_SxMxF = _per_sample_features(_features(self), x_SxMxHxWxC)
    # The seed is the query, an input to attention rather than a weight: not normalized.
    seed_1xF = self.param("seed", nn.initializers.normal(1.0), (1, self.feature_dim))
    query = jnp.broadcast_to(seed_1xF, (h_SxMxF.shape[0], 1, self.feature_dim))
    pooled_Sx1xF = spectral_norm.wrap_attention(self, self.power_iterations)(
      num_heads=self.num_heads, qkv_features=self.feature_dim, out_features=self.feature_dim
    )(query.astype(h_SxMxF.dtype), h_SxMxF, h_SxMxF)
    rho = MLP(self.feature_dim, 1, out_dim=1, power_iterations=self.power_iterations, name="rho")
    logits = rho(pooled_Sx1xF[:, 0])
    return logits[:, 0].astype(jnp.float32)


class ConvPack(nn.Module):
  """PacGAN for images: the M images concatenated on the channel axis; order-dependent."""

  width: int
  feature_dim: int
  power_iterations: int = 0

  @nn.compact
  def __call__(self, x_SxMxHxWxC: jax.Array) -> jax.Array:
    packed_SxHxWxMC = jnp.concatenate(jnp.unstack(x_SxMxHxWxC, axis=1), axis=-1)
    h_SxF = _features(self)(packed_SxHxWxMC)
    dense = spectral_norm.wrap(self, nn.Dense, self.power_iterations)
    return dense(1)(h_SxF)[:, 0].astype(jnp.float32)


class ConvMinibatchStddev(nn.Module):
  """ProGAN's minibatch-stddev within each set, appended to every image's conv features."""

  width: int
  feature_dim: int
  power_iterations: int = 0

  @nn.compact
  def __call__(self, x_SxMxHxWxC: jax.Array) -> jax.Array:
    h_SxMxF = _per_sample_features(_features(self), x_SxMxHxWxC)
    stddev_S = sets.minibatch_stddev(h_SxMxF)
    stddev_SxMx1 = jnp.broadcast_to(stddev_S[:, None, None], (*h_SxMxF.shape[:2], 1))
    features = jnp.concatenate([h_SxMxF, stddev_SxMx1.astype(h_SxMxF.dtype)], axis=-1)
    head = MLP(self.feature_dim, 1, out_dim=1, power_iterations=self.power_iterations, name="head")
    logits_SxM = head(features)[..., 0]
    return jnp.mean(logits_SxM, axis=1).astype(jnp.float32)


def power_iterations(c) -> int:
  """model.discriminator -> the modules' power_iterations: 0 unless spectral_norm is on.

  .get: configs saved before the keys existed (replay, evaluate of old runs) read as off.
  """
  return c.get("power_iterations", 0) if c.get("spectral_norm", False) else 0


CONV_DISCRIMINATORS = {
  "conv": lambda c: ConvSampleDiscriminator(c.width, c.feature_dim, power_iterations(c)),
  "conv_deepsets": lambda c: ConvDeepSets(
    c.width, c.feature_dim, c.num_moments, power_iterations(c)
  ),
  "conv_attention": lambda c: ConvAttention(
    c.width, c.feature_dim, c.num_heads, power_iterations(c)
  ),
  "conv_pack": lambda c: ConvPack(c.width, c.feature_dim, power_iterations(c)),
  "conv_mbstd": lambda c: ConvMinibatchStddev(c.width, c.feature_dim, power_iterations(c)),
}
