"""Discriminators that judge a set of M samples at once: x_SxMxD -> one logit per set, logits_S.

Every module keeps the S sets independent (nothing is pooled across the set axis), so a
gradient penalty can take one gradient of the summed logits. All but `Pack` are invariant to
the order of the samples inside a set.

Depth budget: every discriminator has `depth` hidden layers of `width` in all, split between the
per-sample features and the head after pooling, so variants compare at a similar size.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jgen.models.mlp import MLP

# ProGAN's epsilon; it also keeps the gradient of sqrt finite for a collapsed set.
STDDEV_EPSILON = 1e-8


def central_moments(h_SxMxF: jax.Array, num_moments: int) -> jax.Array:
  """The mean and central moments 2..num_moments of every feature over the set: [S, K*F].

  Raw moments (no roots, no normalisation by the std) stay smooth when the set collapses.
  """
  mean_SxF = jnp.mean(h_SxMxF, axis=1)
  centered_SxMxF = h_SxMxF - mean_SxF[:, None]
  moments = [mean_SxF]
  moments += [jnp.mean(centered_SxMxF**k, axis=1) for k in range(2, num_moments + 1)]
  return jnp.concatenate(moments, axis=-1)


def minibatch_stddev(h_SxMxF: jax.Array) -> jax.Array:
  """ProGAN's statistic: the std over the set of each feature, averaged to one scalar per set.

  About sqrt(1e-8) = 1e-4 for a collapsed set (m copies of one point), larger otherwise.
  """
  var_SxF = jnp.var(h_SxMxF, axis=1)
  return jnp.mean(jnp.sqrt(var_SxF + STDDEV_EPSILON), axis=-1)


def minibatch_similarity(m_SxMxKxC: jax.Array) -> jax.Array:
  """Salimans et al.: o_b(i) = sum over j != i in the set of exp(-||M_i,b - M_j,b||_1): [S,M,K]."""
  l1_SxMxMxK = jnp.sum(jnp.abs(m_SxMxKxC[:, :, None] - m_SxMxKxC[:, None, :]), axis=-1)
  num_samples = m_SxMxKxC.shape[1]
  others_MxM = 1.0 - jnp.eye(num_samples, dtype=m_SxMxKxC.dtype)
  return jnp.einsum("sijk,ij->sik", jnp.exp(-l1_SxMxMxK), others_MxM)


class DeepSets(nn.Module):
  """phi per sample, pooled by the mean and central moments, then rho -> logit."""

  width: int
  depth: int
  num_moments: int

  @nn.compact
  def __call__(self, x_SxMxD: jax.Array) -> jax.Array:
    h_SxMxF = MLP(self.width, self.depth - 1, name="phi")(x_SxMxD)
    pooled_SxP = central_moments(h_SxMxF, self.num_moments)
    logits_Sx1 = MLP(self.width, 1, out_dim=1, name="rho")(pooled_SxP)
    return logits_Sx1[:, 0].astype(jnp.float32)


class AttentionPooling(nn.Module):
  """Set Transformer's PMA: one learned seed vector attends over the set, then rho -> logit."""

  width: int
  depth: int
  num_heads: int

  @nn.compact
  def __call__(self, x_SxMxD: jax.Array) -> jax.Array:
    h_SxMxF = MLP(self.width, self.depth - 1, name="phi")(x_SxMxD)
    seed_1xW = self.param("seed", nn.initializers.normal(1.0), (1, self.width))
    num_sets = x_SxMxD.shape[0]
    query_Sx1xW = jnp.broadcast_to(seed_1xW, (num_sets, 1, self.width)).astype(h_SxMxF.dtype)
    pooled_Sx1xW = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads, qkv_features=self.width, out_features=self.width
    )(query_Sx1xW, h_SxMxF, h_SxMxF)
    logits_Sx1 = MLP(self.width, 1, out_dim=1, name="rho")(pooled_Sx1xW[:, 0])
    return logits_Sx1[:, 0].astype(jnp.float32)


class Pack(nn.Module):
  """PacGAN: the M samples concatenated into one input [S, M*D]; order-dependent by design."""

  width: int
  depth: int

  @nn.compact
  def __call__(self, x_SxMxD: jax.Array) -> jax.Array:
    packed_SxMD = x_SxMxD.reshape(x_SxMxD.shape[0], -1)
    logits_Sx1 = MLP(self.width, self.depth, out_dim=1)(packed_SxMD)
    return logits_Sx1[:, 0].astype(jnp.float32)


class MinibatchDiscrimination(nn.Module):
  """Salimans et al. 2016 within each set; the set's logit is the mean per-sample logit."""

  width: int
  depth: int
  num_kernels: int
  kernel_dim: int

  @nn.compact
  def __call__(self, x_SxMxD: jax.Array) -> jax.Array:
    f_SxMxF = MLP(self.width, self.depth, name="features")(x_SxMxD)
    # The tensor T of the paper, as a bias-free linear map to num_kernels rows of kernel_dim.
    m_SxMxKC = nn.Dense(self.num_kernels * self.kernel_dim, use_bias=False, name="T")(f_SxMxF)
    m_SxMxKxC = m_SxMxKC.reshape(*m_SxMxKC.shape[:-1], self.num_kernels, self.kernel_dim)
    o_SxMxK = minibatch_similarity(m_SxMxKxC)
    features_SxMxG = jnp.concatenate([f_SxMxF, o_SxMxK], axis=-1)
    logits_SxM = nn.Dense(1, name="out")(features_SxMxG)[..., 0]
    return jnp.mean(logits_SxM, axis=1).astype(jnp.float32)


class MinibatchStddev(nn.Module):
  """ProGAN: the set's mean feature std appended to every sample; mean per-sample logit."""

  width: int
  depth: int

  @nn.compact
  def __call__(self, x_SxMxD: jax.Array) -> jax.Array:
    h_SxMxF = MLP(self.width, self.depth - 1, name="features")(x_SxMxD)
    stddev_S = minibatch_stddev(h_SxMxF)
    stddev_SxMx1 = jnp.broadcast_to(stddev_S[:, None, None], (*h_SxMxF.shape[:2], 1))
    features_SxMxG = jnp.concatenate([h_SxMxF, stddev_SxMx1.astype(h_SxMxF.dtype)], axis=-1)
    logits_SxMx1 = MLP(self.width, 1, out_dim=1, name="head")(features_SxMxG)
    return jnp.mean(logits_SxMx1[..., 0], axis=1).astype(jnp.float32)
