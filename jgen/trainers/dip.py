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
from absl import logging

from jgen.core import optimizers, registry, rng
from jgen.core.digest import tree_digest
from jgen.losses import inverse, reconstruction
from jgen.models.dip import SkipNet
from jgen.run import checkpoints, loop
from jgen.run import workdir as workdir_lib
from jgen.viz import imgrid, plots

PHOTOS = ("china", "flower")  # sklearn.datasets.load_sample_image ships these two


class NonFiniteError(RuntimeError):
  pass


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
    from jgen.trainers import dgn

    images = dgn.load_images("digits")
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
class Dip:
  net: SkipNet
  optimizer: optax.GradientTransformation
  operator: inverse.Operator
  task: str
  input_channels: int
  input_scale: float
  input_noise_std: float
  factor: int


def build(config: ml_collections.ConfigDict):
  """(Dip, root, clean x [1, H, W, C], observation y [1, ...]); validates everything."""
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
  )
  return dip, root, clean, observed


def net_input(dip: Dip, root: jax.Array, shape_HxW) -> jax.Array:
  """The fixed noise input (uniform on [0, input_scale), as in Ulyanov et al.)."""
  key = rng.stream_key(root, rng.Stream.Z)
  return dip.input_scale * jax.random.uniform(key, (1, *shape_HxW, dip.input_channels))


def init_state(dip: Dip, root: jax.Array, shape_HxW) -> TrainState:
  def init(root):
    params = dip.net.init(rng.stream_key(root, rng.Stream.INIT_G), net_input(dip, root, shape_HxW))
    return TrainState(jnp.zeros((), jnp.int32), params, dip.optimizer.init(params))

  return jax.jit(init)(root)


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


@functools.cache
def _jitted_chunk(dip: Dip, length: int):
  def chunk(state, root, z, observed):
    # Unrolled: XLA:CPU runs convs inside a rolled scan ~60x slower (jgen/trainers/dgn.py).
    return jax.lax.scan(
      lambda s, _: train_step(dip, s, root, z, observed), state, length=length, unroll=True
    )

  return jax.jit(chunk, donate_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def output(dip: Dip, params, z) -> jax.Array:
  return dip.net.apply(params, z)


def train_and_evaluate(config: ml_collections.ConfigDict, work_dir: str) -> dict:
  dip, root, clean, observed = build(config)
  schedule = loop.Schedule.from_config(config.train)
  workdir_lib.check_resumable(work_dir, config)
  os.makedirs(os.path.join(work_dir, "images"), exist_ok=True)
  shape_HxW = clean.shape[1:3]
  z = net_input(dip, root, shape_HxW)
  state = init_state(dip, root, shape_HxW)
  view = inverse.degraded_view(dip.operator, observed, dip.factor)
  psnr_input = float(reconstruction.psnr(view, clean)[0])
  imgrid.save_image(os.path.join(work_dir, "clean.png"), clean[0])
  imgrid.save_image(os.path.join(work_dir, "degraded.png"), view[0])
  ckpts = checkpoints.Checkpoints(work_dir, keep=config.train.keep_checkpoints)
  try:
    start = ckpts.latest_step() or 0
    if start:
      state = ckpts.restore(start, like=state)
      logging.info("Resumed from the checkpoint at step %d.", start)
    workdir_lib.write_config(work_dir, config)
    log = workdir_lib.MetricsLog(work_dir, resume_step=start)
    logging.info(
      "Deep Image Prior, %s on a %dx%d image (%s): %d steps from %d; psnr_input %.2f dB.",
      dip.task,
      *shape_HxW,
      config.data.image,
      schedule.num_steps,
      start,
      psnr_input,
    )
    progress = loop.Progress(start, schedule.num_steps)
    step, pending, last = start, [], None
    try:
      while step < schedule.num_steps:
        length = schedule.chunk_length(step)
        state, outputs = _jitted_chunk(dip, length)(state, root, z, observed)
        pending.append(outputs["loss"])
        step += length
        if not schedule.should_log(step):
          continue
        losses = np.concatenate(jax.device_get(pending))
        pending = []
        if not np.isfinite(losses).all():
          raise NonFiniteError(
            f"non-finite loss before step {step}; lower optimizer.learning_rate in a new "
            f"--workdir (the last good checkpoint is step {ckpts.latest_step()})"
          )
        steps_per_sec, eta = progress.tick(step)
        row = {"step": step, "loss": float(losses.mean()), "steps_per_sec": steps_per_sec}
        row["state_digest"] = tree_digest(state)
        if schedule.should_eval(step):
          image = output(dip, state.params, z)
          row["psnr"] = float(reconstruction.psnr(image, clean)[0])
          row["psnr_input"] = psnr_input
          imgrid.save_image(os.path.join(work_dir, "images", f"step_{step:08d}.png"), image[0])
          last = row
        log.write(row)
        if schedule.should_checkpoint(step):
          ckpts.save(step, state)
        text = f"step {step}/{schedule.num_steps} {steps_per_sec:.0f} steps/s, ETA {eta} | "
        text += f"loss {row['loss']:.3g}"
        if "psnr" in row:
          text += f" | psnr {row['psnr']:.2f} (input {psnr_input:.2f})"
        logging.info("%s", text)
        progress.restart_window(step)
    finally:
      log.close()
  finally:
    ckpts.close()
  if last is None:  # already complete
    image = output(dip, state.params, z)
    last = {
      "step": step,
      "psnr": float(reconstruction.psnr(image, clean)[0]),
      "psnr_input": psnr_input,
      "state_digest": tree_digest(state),
    }
  rows = [row for row in workdir_lib.read_rows(log.path) if "psnr" in row]
  best = max(rows, key=lambda row: row["psnr"]) if rows else last
  last = {**last, "best_psnr": best["psnr"], "best_step": best["step"]}
  imgrid.save_image(os.path.join(work_dir, "final.png"), output(dip, state.params, z)[0])
  plots.metric_curves(os.path.join(work_dir, "metrics.png"), rows, ["psnr", "psnr_input", "loss"])
  return last
