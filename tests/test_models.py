"""Shapes, permutation invariance, independence of sets, and collapse safety of the models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import gan
from jgen import models
from jgen.models import set_discriminators

INVARIANT = ("deepsets", "attention", "minibatch_disc", "mbstd")
ALL = ("mlp", "pack", *INVARIANT)
NUM_SETS, SET_SIZE, DATA_DIM = 5, 4, 2


def model_config(name: str, set_size: int = SET_SIZE, **overrides):
  """configs/gan.py's model section, shrunk so that tests compile fast."""
  config = gan.get_config().model
  config.set_size = set_size
  config.discriminator.name = name
  config.discriminator.width = 16
  config.discriminator.depth = 2
  config.discriminator.num_kernels = 5
  config.discriminator.kernel_dim = 3
  for key, value in overrides.items():
    config.discriminator[key] = value
  return config


def init_discriminator(name: str, set_size: int = SET_SIZE):
  """The module, its parameters and a batch of sets. Modules are initialized and applied jitted
  here, as a training step runs them: eagerly, each of their operations is a program of its own
  to compile."""
  module = models.make_discriminator(model_config(name, set_size))
  x_SxMxD = jax.random.normal(jax.random.key(1), (NUM_SETS, set_size, DATA_DIM))
  params = jax.jit(module.init)(jax.random.key(0), x_SxMxD)
  return module, params, x_SxMxD


@pytest.mark.parametrize("name", ALL)
def test_discriminator_shapes(name):
  set_sizes = (1,) if name == "mlp" else (1, SET_SIZE)
  for set_size in set_sizes:
    module, params, x_SxMxD = init_discriminator(name, set_size)
    logits_S = jax.jit(module.apply)(params, x_SxMxD)
    assert logits_S.shape == (NUM_SETS,)
    assert logits_S.dtype == jnp.float32


def test_generator_shape_and_pacgan_size():
  config = gan.get_config().model
  generator = models.make_generator(config, data_dim=3)
  z_BxZ = jax.random.normal(jax.random.key(0), (7, config.generator.z_dim))
  params = jax.jit(generator.init)(jax.random.key(1), z_BxZ)
  assert jax.jit(generator.apply)(params, z_BxZ).shape == (7, 3)
  # PacGAN's G: 2 -> 4 x 400 ReLU -> 3 here.
  expected = (2 * 400 + 400) + 3 * (400 * 400 + 400) + (400 * 3 + 3)
  assert sum(p.size for p in jax.tree.leaves(params)) == expected


@pytest.mark.parametrize("name", INVARIANT)
def test_set_discriminator_is_permutation_invariant(name):
  module, params, x_SxMxD = init_discriminator(name)
  # A different permutation for every set, none of them the identity.
  orders_SxM = np.stack([np.roll(np.arange(SET_SIZE), 1 + s % (SET_SIZE - 1)) for s in range(5)])
  permuted_SxMxD = jnp.take_along_axis(x_SxMxD, jnp.asarray(orders_SxM)[..., None], axis=1)
  apply = jax.jit(module.apply)
  np.testing.assert_allclose(
    apply(params, permuted_SxMxD), apply(params, x_SxMxD), rtol=1e-5, atol=1e-6
  )


def test_pack_depends_on_the_order_inside_a_set():
  module, params, x_SxMxD = init_discriminator("pack")
  reversed_SxMxD = x_SxMxD[:, ::-1]
  apply = jax.jit(module.apply)
  difference_S = jnp.abs(apply(params, reversed_SxMxD) - apply(params, x_SxMxD))
  assert jnp.all(difference_S > 1e-4), difference_S


@pytest.mark.parametrize("name", ALL)
def test_sets_do_not_leak_into_each_other(name):
  set_size = 1 if name == "mlp" else SET_SIZE
  module, params, x_SxMxD = init_discriminator(name, set_size)
  changed_SxMxD = x_SxMxD.at[0].set(3.0 * x_SxMxD[0] + 1.0)
  apply = jax.jit(module.apply)  # one program for both batches
  logits_S = apply(params, x_SxMxD)
  changed_logits_S = apply(params, changed_SxMxD)
  assert changed_logits_S[0] != logits_S[0]
  np.testing.assert_array_equal(changed_logits_S[1:], logits_S[1:])


def test_minibatch_stddev_separates_a_collapsed_set_from_a_diverse_one():
  diverse_MxF = jax.random.normal(jax.random.key(0), (SET_SIZE, 8))
  collapsed_MxF = jnp.broadcast_to(diverse_MxF[:1], (SET_SIZE, 8))
  stddev_S = set_discriminators.minibatch_stddev(jnp.stack([collapsed_MxF, diverse_MxF]))
  np.testing.assert_allclose(stddev_S[0], np.sqrt(set_discriminators.STDDEV_EPSILON), rtol=1e-3)
  assert stddev_S[1] > 0.1


def test_minibatch_similarity_counts_the_other_samples_only():
  # Identical samples: every other sample has c = exp(0) = 1, and a sample is not its own other.
  m_SxMxKxC = jnp.zeros((2, SET_SIZE, 3, 2))
  np.testing.assert_array_equal(
    set_discriminators.minibatch_similarity(m_SxMxKxC), np.full((2, SET_SIZE, 3), SET_SIZE - 1)
  )


@pytest.mark.parametrize("name", ALL)
def test_gradients_are_finite_for_a_collapsed_set(name):
  set_size = 1 if name == "mlp" else SET_SIZE
  module, params, x_SxMxD = init_discriminator(name, set_size)
  collapsed_SxMxD = jnp.broadcast_to(x_SxMxD[:, :1], x_SxMxD.shape)
  objective = lambda p, x: jnp.sum(module.apply(p, x))
  param_grads, input_grads = jax.jit(jax.grad(objective, argnums=(0, 1)))(params, collapsed_SxMxD)
  for grad in [*jax.tree.leaves(param_grads), input_grads]:
    assert jnp.all(jnp.isfinite(grad))


def test_unknown_discriminator_lists_the_valid_names():
  with pytest.raises(ValueError, match="valid choices: attention, deepsets, maxout_pack, mbstd"):
    models.make_discriminator(model_config("transformer"))


def test_per_sample_discriminator_on_sets_names_the_fix():
  with pytest.raises(ValueError, match=r"set model.set_size=1 or pick a set discriminator: atten"):
    models.make_discriminator(model_config("mlp", set_size=4))


def test_attention_width_must_divide_into_heads():
  with pytest.raises(ValueError, match=r"divisible by model\.discriminator\.num_heads"):
    models.make_discriminator(model_config("attention", width=18, num_heads=4))


@pytest.mark.parametrize(
  ("name", "overrides"),
  [("pack", {"depth": 0}), ("mbstd", {"width": 0}), ("deepsets", {"num_moments": 0})],
)
def test_invalid_sizes_are_refused(name, overrides):
  with pytest.raises(ValueError, match=r"model\.discriminator\.\w+ must be >= 1, got 0"):
    models.make_discriminator(model_config(name, **overrides))


def test_empty_sets_are_refused():
  with pytest.raises(ValueError, match=r"model\.set_size must be >= 1"):
    models.make_discriminator(model_config("pack", set_size=0))
