"""Spectral normalization of the conv discriminators: stateless, every kernel, default off."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import stacked_digits_setd
from jgen import models
from jgen.models import conv, spectral_norm
from jgen.run import loop, trace
from jgen.trainers import gan as gan_trainer

NAMES = tuple(conv.CONV_DISCRIMINATORS)


def _model_config(name, **discriminator):
  config = stacked_digits_setd.get_config("runlocal")
  config.unlock()
  config.model.discriminator.name = name
  config.model.set_size = 1 if name == "conv" else 4
  config.model.discriminator.update(discriminator)
  return config.model


def _images(name, num_sets=3, seed=0):
  set_size = 1 if name == "conv" else 4
  return jax.random.uniform(jax.random.key(seed), (num_sets, set_size, 8, 8, 3))


def _init(d, x):
  # Jitted: eager op-by-op init and apply of these small nets cost seconds per test.
  return jax.jit(d.init)(jax.random.key(1), x)


def _kernels_as_read(d, params, x):
  """{layer path: the kernel matrix [inputs, outputs] that layer computed with}."""

  def run(params, x):
    seen = {}

    def grab(next_fun, args, kwargs, context):
      layer = context.module
      # The innermost call of a path is the layer itself, inside map_variables: it reads the
      # kernel as normalized (the wrapper's outer call, same path, comes first).
      if context.method_name == "__call__" and isinstance(
        layer, nn.Conv | nn.Dense | nn.DenseGeneral
      ):
        seen[layer.path] = layer.variables["params"]["kernel"]
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(grab):
      d.apply(params, x)
    return seen

  matrices = {}
  for path, kernel in jax.jit(run)(params, x).items():
    kernel = np.asarray(kernel)
    # attention's DenseGeneral projections: query/key/value [F, heads, head_dim], out
    # [heads, head_dim, F]; Dense and Conv kernels are [..., cin, cout], the output last.
    num_in = {"query": 1, "key": 1, "value": 1, "out": 2}.get(path[-1], kernel.ndim - 1)
    matrices[path] = kernel.reshape(int(np.prod(kernel.shape[:num_in])), -1)
  return matrices


def _raw_kernels(params):
  """{layer path: stored kernel} for every 'kernel' leaf of a param tree."""
  kernels = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params["params"]):
    keys = tuple(k.key for k in path)
    if keys[-1] == "kernel":
      kernels[keys[:-1]] = np.asarray(leaf)
  return kernels


@pytest.mark.parametrize("name", NAMES)
def test_on_normalizes_every_kernel_off_none_and_the_params_are_the_same(name):
  x = _images(name)
  plain = models.make_image_discriminator(_model_config(name))
  normalized = models.make_image_discriminator(_model_config(name, spectral_norm=True))
  assert plain.power_iterations == 0 and normalized.power_iterations == 20
  # A config saved before the keys existed, or off with other power_iterations, is plain.
  old = _model_config(name)
  old.discriminator.unlock()
  del old.discriminator["spectral_norm"], old.discriminator["power_iterations"]
  assert models.make_image_discriminator(old) == plain
  assert models.make_image_discriminator(_model_config(name, power_iterations=3)) == plain
  # The normalization is at read time: the same param tree (names, shapes) either way ...
  shapes = jax.eval_shape(plain.init, jax.random.key(1), x)
  assert jax.eval_shape(normalized.init, jax.random.key(1), x) == shapes
  # ... and one power iteration per kernel (2 convs, the feature Dense, the final Dense or a
  # 2-layer head, attention's 4 projections) when on, none when off: off traces the plain D.
  num_kernels = {"conv_attention": 9, "conv_deepsets": 5, "conv_mbstd": 5}.get(name, 4)
  assert len(_raw_kernels(shapes)) == num_kernels
  assert str(jax.make_jaxpr(plain.apply)(shapes, x)).count("scan[") == 0
  assert str(jax.make_jaxpr(normalized.apply)(shapes, x)).count("scan[") == num_kernels


@pytest.mark.parametrize("name", ["conv_attention", "conv_pack"])
def test_every_kernel_is_read_with_spectral_norm_near_one(name):
  """conv_attention has every kind of layer but the final Dense, which conv_pack has."""
  x = _images(name)
  plain = models.make_image_discriminator(_model_config(name))
  d = models.make_image_discriminator(_model_config(name, spectral_norm=True))
  params = _init(d, x)
  # Same init values as the plain D (map_variables keeps the names the init keys come from).
  jax.tree.map(np.testing.assert_array_equal, params, _init(plain, x))
  seen = _kernels_as_read(d, params, x)
  raw = _raw_kernels(params)
  assert set(seen) == set(raw)
  for path, matrix in seen.items():
    norm = np.linalg.norm(matrix, 2)
    # Power iteration underestimates sigma, so the normalized norm is >= 1. Random inits are
    # the slow case (top singular values close together): 20 steps leave ~1% (median) to ~6%
    # (worst seen) above 1 (docs/decisions.md).
    assert 1 - 1e-5 <= norm <= 1.08, (path, norm)
    # ... and it is a rescaling of the stored kernel, not another matrix.
    stored = raw[path].reshape(matrix.shape)
    np.testing.assert_allclose(matrix * (np.linalg.norm(stored, 2) / norm), stored, rtol=1e-4)


def test_sigma_converges_to_the_largest_singular_value_and_underestimates_it():
  w_IxO = jax.random.normal(jax.random.key(3), (288, 64))
  exact = float(jnp.linalg.norm(w_IxO, 2))
  sigma = jax.jit(spectral_norm.sigma, static_argnums=1)
  estimates = [float(sigma(w_IxO, n)) for n in (1, 5, 100)]
  assert all(e <= exact * (1 + 1e-6) for e in estimates)
  # More steps, closer: |W u_n| / |u_n| with u_n = (W^T W)^n u_0 grows with n.
  assert all(a <= b * (1 + 1e-6) for a, b in itertools.pairwise(estimates))
  assert estimates[-1] == pytest.approx(exact, rel=2e-3)
  # Wide matrices (the iteration runs on the smaller side) give the same value.
  assert float(sigma(w_IxO.T, 100)) == pytest.approx(estimates[-1], rel=1e-5)
  # A dominant direction (as training tends to make) converges in a few steps.
  spiked = w_IxO + 3 * exact * jnp.outer(jnp.ones(288) / 17, jnp.ones(64) / 8)
  assert float(sigma(spiked, 5)) == pytest.approx(float(jnp.linalg.norm(spiked, 2)), rel=1e-4)


def test_sigma_gradient_is_v_u_transpose():
  """SN-GAN's gradient: u and v are constants, so d sigma / dW = v u^T (not the iteration's)."""
  w_IxO = jax.random.normal(jax.random.key(4), (20, 6))
  grad = jax.jit(jax.grad(lambda w: spectral_norm.sigma(w, 100)))(w_IxO)
  left, _, right = np.linalg.svd(np.asarray(w_IxO))
  # A sign flip of both singular vectors leaves their outer product alone.
  np.testing.assert_allclose(grad, np.outer(left[:, 0], right[0]), atol=1e-4)


def test_normalized_set_discriminator_is_pure_and_permutation_invariant():
  name = "conv_deepsets"
  d = models.make_image_discriminator(_model_config(name, spectral_norm=True))
  x = _images(name)
  params = _init(d, x)
  assert set(params) == {"params"}  # no mutable collection, no u vectors
  apply = jax.jit(d.apply)
  first = apply(params, x)
  # Bit-identical on a second call: nothing is carried from one call to the next.
  np.testing.assert_array_equal(first, apply(params, x))
  permuted = x[:, jnp.array([2, 0, 3, 1])]
  np.testing.assert_allclose(first, apply(params, permuted), rtol=1e-5, atol=1e-5)
  # ... and it is another function than the plain D of the same params.
  plain = models.make_image_discriminator(_model_config(name))
  assert not np.allclose(first, jax.jit(plain.apply)(params, x))


def _tiny_setd(**overrides):
  config = stacked_digits_setd.get_config("runlocal")
  config.unlock()
  config.data.num_train = 256
  # dotted paths, as on the command line; an unknown key raises, as there
  config.update_from_flattened_dict(overrides)
  return config


def test_training_with_spectral_norm_runs_and_is_deterministic():
  """The trainer's own chunk of steps (train_and_evaluate minus evaluation, which is G's),
  twice from the init: the same state digest, as checkpoints and replay need."""
  # 2 power iterations, not the default 20: the same code, compiled in half the time.
  config = _tiny_setd(
    **{"model.discriminator.spectral_norm": True, "model.discriminator.power_iterations": 2}
  )
  gan, root, data = gan_trainer.build(config)
  assert gan.discriminator.power_iterations == 2

  initial = gan_trainer.init_state(gan, root)  # compiled per call: once here

  def four_steps():
    # A copy each time: the step donates its input state.
    state = jax.tree.map(jnp.copy, initial)
    return loop.run_chunk(gan, state, root, data, length=4)

  state, metrics = four_steps()
  assert int(state.step) == 4
  for key in gan_trainer.METRIC_NAMES:
    assert np.isfinite(metrics[key]).all(), key
  again, _ = four_steps()
  assert trace.state_digest(trace.part_digests(again)) == trace.state_digest(
    trace.part_digests(state)
  )
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), initial.d_params, state.d_params)
  assert all(jax.tree.leaves(moved)), "some D params did not train"


def test_spectral_norm_on_a_2d_discriminator_is_an_error():
  config = _tiny_setd(
    **{
      "data.name": "ring8",
      "model.discriminator.name": "deepsets",
      "model.discriminator.spectral_norm": True,
    }
  )
  with pytest.raises(ValueError, match="spectral_norm is implemented for the conv"):
    gan_trainer.Gan.from_config(config)


def test_power_iterations_must_be_positive_when_on():
  model = _model_config("conv_deepsets", spectral_norm=True, power_iterations=0)
  with pytest.raises(ValueError, match="power_iterations must be >= 1"):
    models.make_image_discriminator(model)
