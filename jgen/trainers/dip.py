"""Deep Image Prior trainer: fit one degraded image from a fixed noise input with a conv net.

The net f (jgen/models/dip.py) maps a fixed noise image z to an image; training minimizes
||A f(z + noise_t) - y||^2 over the net's parameters only, where y = A x + n is the observation of
the clean image x (jgen/losses/inverse.py: identity for denoise, a mask for inpaint, 4x average
pooling for superres). Every evaluation logs `psnr` of f(z) against the clean x and `psnr_input`
of the degraded input, and saves f(z): the curve is the point, since DIP fits the noise too if
it runs long enough, and must be stopped early. The final row adds `best_psnr`, `best_step`.

Keys: the net's init from INIT_G; the fixed input from Z (stream key); the per-step input
perturbation from Z at the step; the observation noise and the mask from TRAIN_SET.
"""

import dataclasses
import functools
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jgen.core import jsonl, optimizers, registry, rng
from jgen.data import digits
from jgen.evals import fidelity
from jgen.losses import inverse
from jgen.models.dip import SkipNet
from jgen.run import interface, loop
from jgen.run.interface import TrainerDefaults, dispatch_for
from jgen.viz import imgrid

PHOTOS = ("china", "flower")  # sklearn.datasets.load_sample_image ships these two


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def load_clean_image(config: ml_collections.ConfigDict) -> np.ndarray:
  """float32[H, W, C] in [0, 1]: a crop of an sklearn photograph, or one digit.

  data.image: 'china' | 'flower' (crop data.crop x data.crop at data.top, data.left) or
  'digit' (digit number data.index of sklearn's digits, 8x8x1).
  """
  name = config.data.image
  registry.choose("data.image", name, dict.fromkeys((*PHOTOS, "digit")))
  if name == "digit":
    images = digits.load_digits()[0]
    if not 0 <= config.data.index < len(images):
      raise ValueError(f"data.index must be in [0, {len(images)}), got {config.data.index}")
    return images[config.data.index]
  from sklearn.datasets import load_sample_image

  photo = load_sample_image(f"{name}.jpg").astype(np.float32) / 255.0
  top, left, size = config.data.top, config.data.left, config.data.crop
  if top < 0 or left < 0 or top + size > photo.shape[0] or left + size > photo.shape[1]:
    raise ValueError(
      f"a {size}x{size} crop at ({top}, {left}) does not fit the {photo.shape[0]}x"
      f"{photo.shape[1]} photo {name!r}; change data.top, data.left or data.crop"
    )
  return photo[top : top + size, left : left + size]


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class Dip(TrainerDefaults):
  net: SkipNet
  optimizer: optax.GradientTransformation
  operator: inverse.Operator
  task: str
  input_channels: int
  input_scale: float
  input_noise_std: float
  factor: int
  clean: jax.Array  # x [1, H, W, C], what psnr measures against
  observed: jax.Array  # y = A x + n, what the net is fit to

  # What the run loop reads besides the fields above (jgen/run/interface.py's Trainer).
  metric_names = ("loss",)
  finite_metrics = ("loss",)
  step_by_step, unroll = dispatch_for(convolutional=True, unrolled=True)
  picture_dir = "images"
  curves = ("psnr", "psnr_input", "loss")
  non_finite_hint = "lower optimizer.learning_rate"

  @property
  def shape_HxW(self) -> tuple[int, int]:
    return tuple(self.clean.shape[1:3])

  @functools.cached_property
  def psnr_input(self) -> float:
    """PSNR of the degraded input as an image (the bar DIP must clear)."""
    view = inverse.degraded_view(self.operator, self.observed, self.factor)
    return float(fidelity.psnr(view, self.clean)[0])

  def describe(self) -> str:
    h, w = self.shape_HxW
    return f"Deep Image Prior, {self.task} on a {h}x{w} image, psnr_input {self.psnr_input:.2f} dB"

  def begin(self, work_dir: str) -> None:
    view = inverse.degraded_view(self.operator, self.observed, self.factor)
    imgrid.save_image(os.path.join(work_dir, "clean.png"), self.clean[0])
    imgrid.save_image(os.path.join(work_dir, "degraded.png"), view[0])

  def init_state(self, root: jax.Array) -> "TrainState":
    return init_state(self, root, self.shape_HxW)

  def step(self, state: "TrainState", root: jax.Array, data):
    z, observed = data
    return train_step(self, state, root, z, observed)

  def evaluate(self, state: "TrainState", root: jax.Array, data):
    image = output(self, state.params, data[0])
    psnr = float(fidelity.psnr(image, self.clean)[0])
    return np.asarray(image[0]), {"psnr": psnr, "psnr_input": self.psnr_input}

  def sample(self, state: "TrainState", key: jax.Array, num_samples: int):
    raise NotImplementedError(
      "Deep Image Prior fits one image from one fixed input: it has no prior to draw new "
      "samples from, so sample-based evaluators do not apply (its rows score the one image: "
      "psnr, best_psnr)"
    )

  def picture(self, path: str, samples, title: str, row: dict | None) -> None:
    imgrid.save_image(path, samples)

  def progress_text(self, row: dict) -> str:
    text = f"loss {row['loss']:.3g}"
    if "psnr" in row:
      text += f" | psnr {row['psnr']:.2f} (input {row['psnr_input']:.2f})"
    return text

  def finalize(self, state, root, data, work_dir: str, config, final_row: dict) -> dict:
    """The best evaluation of the run (DIP must be stopped early), and final.png."""
    rows = jsonl.read_rows(os.path.join(work_dir, "metrics.jsonl"))
    rows = [row for row in rows if "psnr" in row] or [final_row]
    best = max(rows, key=lambda row: row["psnr"])
    image = output(self, state.params, data[0])[0]
    imgrid.save_image(os.path.join(work_dir, "final.png"), image)
    return {**final_row, "best_psnr": best["psnr"], "best_step": best["step"]}


def build(config: ml_collections.ConfigDict):
  """(Dip, root, (the fixed noise input z, the observation y [1, ...])); validates everything.

  The clean image x [1, H, W, C] that PSNR measures against is `dip.clean`.
  """
  clean = load_clean_image(config)
  root = rng.root_key(config.seed)
  task = config.task
  registry.choose("task", task, dict.fromkeys(inverse.TASKS))
  data_key = rng.stream_key(root, rng.Stream.TRAIN_SET)
  operator = inverse.make_operator(
    task,
    key=jax.random.fold_in(data_key, 1),
    shape_HxW=clean.shape[:2],
    keep_fraction=config.degrade.keep_fraction,
    mask_kind=config.degrade.mask,
    factor=config.degrade.factor,
  )
  noise_std = config.degrade.noise_std if task == "denoise" else config.degrade.extra_noise_std
  clean = jnp.asarray(clean)[None]
  observed = inverse.degrade(operator, clean, jax.random.fold_in(data_key, 0), noise_std)
  dip = Dip(
    net=SkipNet(
      out_channels=clean.shape[-1],
      channels=tuple(config.model.channels),
      skip_channels=config.model.skip_channels,
    ),
    optimizer=optimizers.make_optimizer(config.optimizer),
    operator=operator,
    task=task,
    input_channels=config.model.input_channels,
    input_scale=config.model.input_scale,
    input_noise_std=config.model.input_noise_std,
    factor=config.degrade.factor,
    clean=clean,
    observed=observed,
  )
  return dip, root, (net_input(dip, root, dip.shape_HxW), observed)


def net_input(dip: Dip, root: jax.Array, shape_HxW) -> jax.Array:
  """The fixed noise input (uniform on [0, input_scale), as in Ulyanov et al.)."""
  key = rng.stream_key(root, rng.Stream.Z)
  return dip.input_scale * jax.random.uniform(key, (1, *shape_HxW, dip.input_channels))


def init_state(dip: Dip, root: jax.Array, shape_HxW) -> TrainState:
  def init(root):
    params = dip.net.init(rng.stream_key(root, rng.Stream.INIT_G), net_input(dip, root, shape_HxW))
    return TrainState(jnp.zeros((), jnp.int32), params, dip.optimizer.init(params))

  return interface.compiled(dip, ("init_state", tuple(shape_HxW)), lambda: jax.jit(init))(root)


def train_step(dip: Dip, state: TrainState, root, z, observed):
  # Perturbing the input each step regularizes the fit (Ulyanov et al.: sigma_p = 1/30).
  noise = jax.random.normal(rng.step_key(root, rng.Stream.Z, state.step), z.shape)
  loss, grads = jax.value_and_grad(
    lambda p: inverse.data_loss(
      dip.operator, dip.net.apply(p, z + dip.input_noise_std * noise), observed
    )
  )(state.params)
  updates, opt_state = dip.optimizer.update(grads, state.opt_state, state.params)
  new = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state)
  return new, {"loss": loss}


@functools.partial(jax.jit, static_argnums=0)
def output(dip: Dip, params, z) -> jax.Array:
  return dip.net.apply(params, z)


def train_and_evaluate(config: ml_collections.ConfigDict, work_dir: str) -> dict:
  """Fits the net to the degraded image (resuming if WORKDIR has checkpoints); the final row
  adds the best evaluation's `best_psnr` and `best_step`."""
  dip, root, data = build(config)
  return loop.train(dip, config, work_dir, root, data)
