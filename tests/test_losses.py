"""GAN losses: known values, gradient signs, and the set gradient penalty."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jgen.losses import adversarial as losses
from tests.test_models import ALL, SET_SIZE, init_discriminator

NAMES = ("non_saturating", "minimax", "hinge", "wgan_gp")


def test_known_values_at_zero_logits():
  zeros_S = jnp.zeros(8)
  non_saturating = losses.get_loss("non_saturating")
  np.testing.assert_allclose(non_saturating.discriminator(zeros_S, zeros_S), 2 * np.log(2))
  np.testing.assert_allclose(non_saturating.generator(zeros_S), np.log(2))
  np.testing.assert_allclose(losses.get_loss("minimax").generator(zeros_S), -np.log(2))
  hinge = losses.get_loss("hinge")
  np.testing.assert_allclose(hinge.discriminator(zeros_S, zeros_S), 2.0)
  np.testing.assert_allclose(hinge.generator(zeros_S), 0.0)
  np.testing.assert_allclose(losses.get_loss("wgan_gp").discriminator(zeros_S + 1, zeros_S), -1.0)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_signs(name):
  # D gains by raising real logits and lowering fake ones; G gains by raising fake logits.
  loss = losses.get_loss(name)
  real_S = jnp.linspace(-0.5, 0.5, 6)
  fake_S = jnp.linspace(-0.4, 0.6, 6)
  d_real_S, d_fake_S = jax.grad(loss.discriminator, argnums=(0, 1))(real_S, fake_S)
  assert jnp.all(d_real_S < 0) and jnp.all(d_fake_S > 0)
  assert jnp.all(jax.grad(loss.generator)(fake_S) < 0)
  assert loss.uses_gradient_penalty == (name == "wgan_gp")


def test_unknown_loss_lists_the_valid_names():
  with pytest.raises(ValueError, match="valid choices: hinge, minimax, non_saturating, wgan_gp"):
    losses.get_loss("lsgan")


def _jitted_penalty(critic, real_SxMxD, fake_SxMxD, key):
  """losses.gradient_penalty as one jitted program (as a training step runs it): eagerly, each
  of its hundreds of operations is a program of its own to compile."""
  return jax.jit(lambda r, f, k: losses.gradient_penalty(critic, r, f, k))(
    real_SxMxD, fake_SxMxD, key
  )


@pytest.mark.parametrize("norm", [1.0, 0.5, 3.0])
def test_gradient_penalty_of_a_linear_critic_is_its_norm_gap(norm):
  keys = jax.random.split(jax.random.key(0), 3)
  w_MxD = jax.random.normal(keys[0], (SET_SIZE, 2))
  w_MxD = norm * w_MxD / jnp.linalg.norm(w_MxD)
  critic = lambda x_SxMxD: jnp.sum(x_SxMxD * w_MxD, axis=(1, 2))
  real_SxMxD = jax.random.normal(keys[1], (5, SET_SIZE, 2))
  fake_SxMxD = jax.random.normal(keys[2], (5, SET_SIZE, 2))
  penalty = _jitted_penalty(critic, real_SxMxD, fake_SxMxD, jax.random.key(3))
  np.testing.assert_allclose(penalty, (norm - 1.0) ** 2, atol=1e-6)


def test_gradient_penalty_interpolates_one_weight_per_set():
  # critic = sum of squares has gradient 2 x_hat; with real = 1, fake = 0 the set's gradient
  # norm is 2 a sqrt(M D), so the penalty reveals whether one a was shared across the set.
  num_sets = 64
  critic = lambda x_SxMxD: jnp.sum(x_SxMxD**2, axis=(1, 2))
  real_SxMxD = jnp.ones((num_sets, SET_SIZE, 2))
  key = jax.random.key(7)
  penalty = _jitted_penalty(critic, real_SxMxD, jnp.zeros_like(real_SxMxD), key)
  alpha_S = jax.random.uniform(key, (num_sets, 1, 1))[:, 0, 0]
  expected = jnp.mean((2 * alpha_S * np.sqrt(SET_SIZE * 2) - 1) ** 2)
  np.testing.assert_allclose(penalty, expected, rtol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_gradient_penalty_has_finite_gradients_on_collapsed_sets(name):
  set_size = 1 if name == "mlp" else SET_SIZE
  module, params, x_SxMxD = init_discriminator(name, set_size)
  collapsed_SxMxD = jnp.broadcast_to(x_SxMxD[:, :1], x_SxMxD.shape)

  def penalty(p):
    critic = lambda x: module.apply(p, x)
    return losses.gradient_penalty(critic, collapsed_SxMxD, collapsed_SxMxD, jax.random.key(0))

  # Jitted, as in a training step (eagerly, every operation is a program of its own).
  for grad in jax.tree.leaves(jax.jit(jax.grad(penalty))(params)):
    assert jnp.all(jnp.isfinite(grad))
