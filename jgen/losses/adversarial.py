"""GAN losses on logits, and the WGAN-GP gradient penalty on set inputs.

Logits are one per set, logits_S; every loss is a mean over sets, and both players minimize.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jgen.core import registry


@dataclasses.dataclass(frozen=True)
class GanLoss:
  discriminator: Callable[[jax.Array, jax.Array], jax.Array]  # (real_S, fake_S) -> D's loss
  generator: Callable[[jax.Array], jax.Array]  # fake_S -> G's loss
  # The trainer adds config.loss.gp_weight * gradient_penalty(...) to D's loss.
  uses_gradient_penalty: bool = False


def _logistic_discriminator(real_S: jax.Array, fake_S: jax.Array) -> jax.Array:
  # -log sigmoid(real) - log(1 - sigmoid(fake)), in the overflow-free softplus form.
  return jnp.mean(jax.nn.softplus(-real_S)) + jnp.mean(jax.nn.softplus(fake_S))


def _non_saturating_generator(fake_S: jax.Array) -> jax.Array:
  return jnp.mean(jax.nn.softplus(-fake_S))


def _minimax_generator(fake_S: jax.Array) -> jax.Array:
  # log(1 - sigmoid(fake)) = -softplus(fake): the original game, saturating when D wins.
  return -jnp.mean(jax.nn.softplus(fake_S))


def _hinge_discriminator(real_S: jax.Array, fake_S: jax.Array) -> jax.Array:
  return jnp.mean(jax.nn.relu(1.0 - real_S)) + jnp.mean(jax.nn.relu(1.0 + fake_S))


def _wasserstein_discriminator(real_S: jax.Array, fake_S: jax.Array) -> jax.Array:
  return jnp.mean(fake_S) - jnp.mean(real_S)


def _critic_generator(fake_S: jax.Array) -> jax.Array:
  return -jnp.mean(fake_S)


LOSSES = {
  "non_saturating": GanLoss(_logistic_discriminator, _non_saturating_generator),
  "minimax": GanLoss(_logistic_discriminator, _minimax_generator),
  "hinge": GanLoss(_hinge_discriminator, _critic_generator),
  "wgan_gp": GanLoss(_wasserstein_discriminator, _critic_generator, uses_gradient_penalty=True),
}


def get_loss(name: str) -> GanLoss:
  return registry.choose("loss", name, LOSSES)


def gradient_penalty(
  critic: Callable[[jax.Array], jax.Array],
  real_SxMxD: jax.Array,
  fake_SxMxD: jax.Array,
  key: jax.Array,
) -> jax.Array:
  """Mean over sets of (||d critic / d x_hat|| - 1)^2, x_hat between a real and a fake set.

  One interpolation weight per set, and the norm is over the whole set input [M, D]: the
  penalty on the set, which for M = 1 is the usual WGAN-GP. `critic` maps x_SxMxD -> logits_S
  and must keep sets independent, so one gradient of the summed logits is every set's own.
  """
  return gradient_penalty_at(critic, real_SxMxD, fake_SxMxD, penalty_weights(key, real_SxMxD))


def penalty_weights(key: jax.Array, real_SxMxD: jax.Array) -> jax.Array:
  """The interpolation weight of each set, shaped to broadcast over it: [S, 1, ...]."""
  weight_shape = (real_SxMxD.shape[0],) + (1,) * (real_SxMxD.ndim - 1)
  return jax.random.uniform(key, weight_shape, real_SxMxD.dtype)


def gradient_penalty_at(
  critic: Callable[[jax.Array], jax.Array],
  real_SxMxD: jax.Array,
  fake_SxMxD: jax.Array,
  alpha: jax.Array,
) -> jax.Array:
  """`gradient_penalty` with its weights drawn already: a data-parallel step draws them for the
  whole batch, so that each device penalizes its own sets with the weights one device would."""
  x_hat = alpha * real_SxMxD + (1.0 - alpha) * fake_SxMxD
  grad = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)
  # The epsilon keeps the penalty's own gradient finite where the critic's gradient is zero.
  norm_S = jnp.sqrt(jnp.sum(grad**2, axis=tuple(range(1, grad.ndim))) + 1e-12)
  return jnp.mean((norm_S - 1.0) ** 2)
