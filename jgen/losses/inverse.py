"""Inverse-problem operators: y = A(x) + noise, for images x [..., H, W, C].

Each operator is linear and comes with its adjoint, so that <A x, y> = <x, A^T y> (tested):
  identity      denoising (y = x + noise)
  mask          inpainting: keeps the pixels where mask == 1 (A^T = A)
  downsample    super-resolution: average pooling by `factor` (A^T spreads each low-res pixel
                evenly over its factor x factor block, divided by factor**2)

`make_operator(task, ...)` picks one by task name; `degrade` applies it and adds noise;
`data_loss` scores a reconstruction against y; `degraded_view` shows y as a full-size image.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jgen.core import registry

TASKS = ("denoise", "inpaint", "superres")


@dataclasses.dataclass(frozen=True, eq=False)
class Operator:
  """A linear degradation A and its adjoint; `observed_shape` maps an image shape to y's."""

  name: str
  forward: Callable[[jax.Array], jax.Array]
  adjoint: Callable[[jax.Array], jax.Array]
  observed_shape: Callable[[tuple], tuple]

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.forward(x)


def identity() -> Operator:
  return Operator("identity", lambda x: x, lambda y: y, lambda shape: tuple(shape))


def mask(mask_HxWx1: jax.Array) -> Operator:
  """Keeps the pixels where the mask is 1 (all channels); zeros the rest."""
  m = jnp.asarray(mask_HxWx1, jnp.float32)
  return Operator("mask", lambda x: x * m, lambda y: y * m, lambda shape: tuple(shape))


def downsample(factor: int) -> Operator:
  """Average pooling by `factor` over H and W; the image sides must divide by it."""
  if factor < 1:
    raise ValueError(f"downsample factor must be >= 1, got {factor}")

  def check(shape):
    h, w = shape[-3], shape[-2]
    if h % factor or w % factor:
      raise ValueError(
        f"a {h}x{w} image cannot be downsampled by {factor}: both sides must divide by it"
      )
    return (*shape[:-3], h // factor, w // factor, shape[-1])

  def forward(x):
    *lead, h, w, c = check(x.shape)
    blocks = x.reshape(*lead, h, factor, w, factor, c)
    return blocks.mean(axis=(-4, -2))

  def adjoint(y):
    spread = jnp.repeat(jnp.repeat(y, factor, axis=-3), factor, axis=-2)
    return spread / factor**2

  return Operator(f"downsample{factor}", forward, adjoint, check)


def random_mask(key: jax.Array, shape_HxW: tuple, keep_fraction: float) -> jax.Array:
  """float32[H, W, 1]: 1 where a pixel is observed, i.i.d. with probability keep_fraction."""
  if not 0.0 < keep_fraction <= 1.0:
    raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
  return jax.random.bernoulli(key, keep_fraction, (*shape_HxW, 1)).astype(jnp.float32)


def block_mask(shape_HxW: tuple, top: int, left: int, height: int, width: int) -> jax.Array:
  """float32[H, W, 1]: 1 everywhere except a missing height x width block."""
  rows = jnp.arange(shape_HxW[0])[:, None]
  cols = jnp.arange(shape_HxW[1])[None, :]
  hole = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
  return (~hole).astype(jnp.float32)[..., None]


_MASKS = ("random", "block")


def make_mask(kind: str, key: jax.Array, shape_HxW: tuple, keep_fraction: float) -> jax.Array:
  """A random mask keeping `keep_fraction`, or a centred block covering 1 - keep_fraction."""
  registry.choose("mask kind", kind, dict.fromkeys(_MASKS))
  if kind == "random":
    return random_mask(key, shape_HxW, keep_fraction)
  h, w = shape_HxW
  side = (1.0 - keep_fraction) ** 0.5
  bh, bw = max(1, round(h * side)), max(1, round(w * side))
  return block_mask(shape_HxW, (h - bh) // 2, (w - bw) // 2, bh, bw)


def make_operator(task: str, *, key, shape_HxW, keep_fraction=0.5, mask_kind="random", factor=4):
  """The operator of a task: denoise -> identity, inpaint -> mask, superres -> downsample."""
  registry.choose("task", task, dict.fromkeys(TASKS))
  if task == "denoise":
    return identity()
  if task == "inpaint":
    return mask(make_mask(mask_kind, key, shape_HxW, keep_fraction))
  return downsample(factor)


def degrade(operator: Operator, x: jax.Array, key: jax.Array, noise_std: float) -> jax.Array:
  """y = A(x) + N(0, noise_std^2), the observation an inverse problem starts from."""
  y = operator(x)
  if noise_std > 0:
    y = y + noise_std * jax.random.normal(key, y.shape, y.dtype)
    if operator.name == "mask":
      y = operator(y)  # missing pixels stay missing (zero), noise or not
  return y


def data_loss(operator: Operator, prediction: jax.Array, observed: jax.Array) -> jax.Array:
  """Mean squared error of A(prediction) against y, over the observed entries only."""
  residual = jnp.square(operator(prediction) - observed)
  if operator.name == "mask":
    observed_count = jnp.sum(operator(jnp.ones_like(prediction)))
    return jnp.sum(residual) / jnp.maximum(observed_count, 1.0)
  return jnp.mean(residual)


def degraded_view(operator: Operator, observed: jax.Array, factor: int) -> jax.Array:
  """y as an image of the clean one's size, in [0, 1]: the noisy image, the masked image (holes
  zero), or the low-res image upsampled bicubically by `factor`."""
  if operator.name.startswith("downsample"):
    n, h, w, c = observed.shape
    return jnp.clip(jax.image.resize(observed, (n, h * factor, w * factor, c), "cubic"), 0, 1)
  return jnp.clip(observed, 0.0, 1.0)
