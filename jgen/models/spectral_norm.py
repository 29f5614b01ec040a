"""Spectral normalization (Miyato et al. 2018, SN-GAN) without state, for the conv discriminators.

Each kernel W is read as W / sigma(W), sigma estimated by power iteration on W reshaped to a
matrix [kh*kw*cin, cout] (Miyato's convention: all axes but the output's are rows). Unlike
flax's nn.SpectralNorm, no u vector is carried between calls in a mutable collection: every
call starts the iteration from the same fixed vector. So D stays the pure function
`apply(d_params, x)` of a params-only pytree that the trainer, populations, sharding,
checkpoint digests and replay rely on (docs/decisions.md, "Spectral normalization").

The wrapping is nn.map_variables on the layer class: the stored params are the raw kernels,
with the names and init of the unwrapped layer, and the normalization happens when read.
"""

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


def _l2_normalize(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x), 1e-12)


def start_vector(dim: int) -> jax.Array:
  """The fixed start of every power iteration: a normal draw from key 0, unit length.

  Not all ones: the ones vector is orthogonal to the top singular vector whenever that vector's
  entries sum to zero (a filter bank contrasting channels), and power iteration then never finds
  it; a generic draw has a component ~1/sqrt(dim) along it whatever W's structure. Computed at
  trace time, so the compiled step holds it as a constant.
  """
  with jax.ensure_compile_time_eval():
    return _l2_normalize(jax.random.normal(jax.random.key(0), (dim,), jnp.float32))


def sigma(matrix_IxO: jax.Array, power_iterations: int) -> jax.Array:
  """The largest singular value of matrix_IxO, estimated by `power_iterations` steps.

  Each step is one product with the Gram matrix W^T W (u <- W^T W u / norm), the iterates of
  SN-GAN's alternating v = W u, u = W^T v. The estimate u^T W v never exceeds the true value
  (u, v are unit vectors), so W / sigma has spectral norm >= 1, approaching 1 as the steps
  converge (tests/test_spectral_norm.py).
  """
  if power_iterations < 1:
    raise ValueError(f"power_iterations must be >= 1, got {power_iterations}")
  matrix = matrix_IxO.astype(jnp.float32)
  # W and W^T have the same singular values: iterate on the smaller Gram matrix.
  matrix_RxC = matrix.T if matrix.shape[0] < matrix.shape[1] else matrix
  # SN-GAN: u and v are constants for the gradient, d sigma / dW = v u^T; stopping the gradient
  # on W for the iteration also keeps it out of the backward pass.
  fixed_RxC = jax.lax.stop_gradient(matrix_RxC)
  # One GEMM, then `power_iterations` CxC matvecs: alternating matvecs with the RxC matrix
  # give the same iterates but were ~2.5x slower on a 2-core CPU and left an H200 step 1.7x
  # slower at 20 iterations (docs/decisions.md).
  # HIGHEST: the default f32 matmul precision on GPU/TPU may round through bf16 or tf32.
  gram_CxC = jnp.dot(fixed_RxC.T, fixed_RxC, precision=jax.lax.Precision.HIGHEST)

  def step(_, u_C):
    return _l2_normalize(jnp.dot(gram_CxC, u_C, precision=jax.lax.Precision.HIGHEST))

  # Unrolled: a few matvecs as straight-line code that XLA can fuse and schedule with the rest,
  # rather than a device loop with its per-trip overhead.
  start_C = start_vector(matrix_RxC.shape[1])
  u_C = jax.lax.fori_loop(0, power_iterations, step, start_C, unroll=True)
  v_R = _l2_normalize(jnp.dot(fixed_RxC, u_C, precision=jax.lax.Precision.HIGHEST))
  return jnp.dot(v_R, jnp.dot(matrix_RxC, u_C, precision=jax.lax.Precision.HIGHEST))


def normalize(
  kernel: jax.Array, power_iterations: int, num_in_axes: int | None = None
) -> jax.Array:
  """kernel / sigma(kernel as a matrix [prod(in axes), prod(out axes)]).

  num_in_axes: the leading axes that index inputs; None for all but the last (Dense, Conv).
  """
  if num_in_axes is None:
    num_in_axes = kernel.ndim - 1
  s = sigma(kernel.reshape(math.prod(kernel.shape[:num_in_axes]), -1), power_iterations)
  # An all-zero kernel has sigma 0: leave it at zero rather than NaN (as nn.SpectralNorm does).
  return (kernel / jnp.where(s != 0, s, 1.0).astype(kernel.dtype)).astype(kernel.dtype)


def _map_kernels(parent: nn.Module, layer: type[nn.Module], fn: Callable) -> type[nn.Module]:
  """`layer` with its params read through fn, except during init (the raw kernels are stored)."""

  def read(variables):
    # At init map_variables stores what the layer saw; keep the raw init there.
    return variables if parent.is_initializing() else fn(variables)

  wrapped = nn.map_variables(layer, "params", read, init=parent.is_initializing())
  # Keep the layer's auto-names (Conv_0, Dense_1, ...) so the param tree, and the init drawn
  # from those names, is the one the same D has without spectral normalization.
  wrapped.__name__ = layer.__name__
  return wrapped


def wrap(parent: nn.Module, layer: type[nn.Module], power_iterations: int) -> type[nn.Module]:
  """nn.Dense or nn.Conv (or any layer with one 'kernel' whose last axis is the output), with
  the kernel spectrally normalized when read; `layer` itself when power_iterations is 0.

  Called inside the parent's compact __call__: the wrapper asks the parent whether it is
  initializing. Biases are not normalized (Miyato et al.).
  """
  if power_iterations == 0:
    return layer

  def fn(variables):
    params = dict(variables["params"])
    params["kernel"] = normalize(params["kernel"], power_iterations)
    return {**variables, "params": params}

  return _map_kernels(parent, layer, fn)


def wrap_attention(parent: nn.Module, power_iterations: int) -> type[nn.Module]:
  """nn.MultiHeadDotProductAttention with its query, key, value and out projections normalized.

  The projections are DenseGenerals: query/key/value kernels are [F, heads, head_dim] (one input
  axis), the out kernel [heads, head_dim, F] (two); each is normalized as the matrix of its
  linear map, F -> heads*head_dim and heads*head_dim -> F.
  """
  layer = nn.MultiHeadDotProductAttention
  if power_iterations == 0:
    return layer

  def fn(variables):
    params = {}
    for name, projection in variables["params"].items():
      num_in_axes = 2 if name == "out" else 1
      kernel = normalize(projection["kernel"], power_iterations, num_in_axes)
      params[name] = {**projection, "kernel": kernel}
    return {**variables, "params": params}

  return _map_kernels(parent, layer, fn)
