"""DGN/GLO trainer: a latent table z [N, z_dim] and a conv generator G, fit jointly so that
G(z_i) reproduces every training image x_i (maximum likelihood or a perceptual loss).

One jitted `train_step(state, root, data)` gathers the step's code indices from the core
sampler, takes the gradient of the loss in G's parameters and in the gathered codes, scatters
the codes' gradient into the table, and updates both; `train_chunk` scans it. As in gan.py
every random draw is `fold_in(root, stream, step)`, so a checkpoint needs no key.
Evaluation reconstructs all N images: per-image PSNR and the fraction reconstructed exactly.
The final evaluation adds interpolations and samples from densities fitted to the codes.
"""

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from jgen.core import optimizers, rng
from jgen.core.digest import tree_digest
from jgen.data import samplers
from jgen.losses import reconstruction
from jgen.models.dgn import ConvGenerator
from jgen.run import checkpoints, loop, workdir
from jgen.viz import imgrid, plots

METRIC_NAMES = ("loss", "batch_psnr")
DATASETS = ("digits",)
PROJECTIONS = ("none", "sphere")
HELD_OUT_START = 1500  # digits 1500..1796 are never trained on: inverse problems use them


class NonFiniteError(RuntimeError):
  pass


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: also the whole key state of the run
  g_params: Any  # {"net": G's parameters[, "log_sigma": scalar for gaussian_nll]}
  latents: jax.Array  # float32[N, z_dim]: z_i of training image i
  g_opt_state: Any
  z_opt_state: Any


def load_images(name: str) -> np.ndarray:
  """float32[M, H, W, C] in [0, 1]: every image of the dataset, in its stored order."""
  registry_choice = {"digits": None}
  if name not in registry_choice:
    from jgen.core import registry

    registry.choose("data.name", name, registry_choice)
  try:
    from jgen.data import digits  # the images issue's loader
  except ImportError:  # pragma: no cover - only before that module existed
    from sklearn import datasets

    return (datasets.load_digits().images.astype(np.float32) / 16.0)[..., None]
  return np.asarray(digits.load_digits()[0])


def training_images(config: ml_collections.ConfigDict) -> np.ndarray:
  """The first `data.num_train` digits (a fixed, documented subset: no key involved)."""
  images = load_images(config.data.name)
  n = config.data.num_train
  if not 1 <= n <= HELD_OUT_START:
    raise ValueError(
      f"data.num_train must be in [1, {HELD_OUT_START}] (digits from {HELD_OUT_START} on are "
      f"held out for inverse problems), got {n}"
    )
  return images[:n]


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class Dgn:
  generator: ConvGenerator
  loss: reconstruction.ReconstructionLoss
  g_optimizer: optax.GradientTransformation
  z_optimizer: optax.GradientTransformation
  sample_indices: Callable[[jax.Array, jax.Array], jax.Array]
  num_train: int
  batch_size: int
  z_dim: int
  z_init_std: float
  project: str
  image_shape: tuple
  exact_psnr: float

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, image_shape: tuple) -> "Dgn":
    n = config.data.num_train
    z_dim = config.model.z_dim
    if z_dim < 1:
      raise ValueError(f"model.z_dim must be >= 1, got {z_dim}")
    if config.model.width < 1:
      raise ValueError(f"model.width must be >= 1, got {config.model.width}")
    project = config.latent.project
    if project not in PROJECTIONS:
      raise ValueError(
        f"unknown latent.project {project!r}; valid choices: {', '.join(PROJECTIONS)}"
      )
    return cls(
      generator=ConvGenerator(
        image_shape=tuple(image_shape),
        width=config.model.width,
        num_upsamples=config.model.num_upsamples,
        extra_convs=config.model.extra_convs,
      ),
      loss=reconstruction.make_loss(config.loss, tuple(image_shape)),
      g_optimizer=_with_decay(optimizers.make_optimizer(config.optimizer), config),
      z_optimizer=_with_decay(optimizers.make_optimizer(config.latent.optimizer), config),
      sample_indices=samplers.make_sampler(
        config.sampler,
        num_examples=n,
        batch_size=config.train.batch_size,
        num_steps=config.train.num_steps,
      ),
      num_train=n,
      batch_size=samplers.global_batch_size(
        config.sampler, num_examples=n, batch_size=config.train.batch_size
      ),
      z_dim=z_dim,
      z_init_std=config.latent.init_std,
      project=project,
      image_shape=tuple(image_shape),
      exact_psnr=config.eval.exact_psnr,
    )

  def decode(self, g_params, z_NxZ):
    return self.generator.apply(g_params["net"], z_NxZ)

  def constrain(self, z_NxZ):
    """GLO's projection of codes onto the unit sphere (or nothing)."""
    if self.project == "sphere":
      return z_NxZ / jnp.maximum(jnp.linalg.norm(z_NxZ, axis=-1, keepdims=True), 1e-12)
    return z_NxZ


DECAYS = ("none", "cosine")


def _with_decay(optimizer, config) -> optax.GradientTransformation:
  """Scales the updates by a cosine decay to 0 over train.num_steps (`train.lr_decay`).

  Adam's updates have a noise floor set by the learning rate; decaying it lets the last
  steps settle the reconstructions to 40 dB and beyond.
  """
  decay = config.train.lr_decay
  if decay not in DECAYS:
    raise ValueError(f"unknown train.lr_decay {decay!r}; valid choices: {', '.join(DECAYS)}")
  if decay == "none":
    return optimizer
  schedule = optax.cosine_decay_schedule(1.0, config.train.num_steps)
  return optax.chain(optimizer, optax.scale_by_schedule(schedule))


def build(config: ml_collections.ConfigDict) -> tuple[Dgn, jax.Array, jax.Array]:
  """(the validated Dgn, its root key, its training images on the device)."""
  images = training_images(config)
  dgn = Dgn.from_config(config, images.shape[1:])
  return dgn, rng.root_key(config.seed), jnp.asarray(images)


def init_state(dgn: Dgn, root: jax.Array) -> TrainState:
  return jax.jit(functools.partial(_init_state, dgn))(root)


def _init_state(dgn: Dgn, root: jax.Array) -> TrainState:
  init_key = rng.stream_key(root, rng.Stream.INIT_G)
  # The latent table is G's input, so it draws from G's init stream, folded with 1.
  net = dgn.generator.init(init_key, jnp.zeros((1, dgn.z_dim), jnp.float32))
  g_params = {"net": net}
  if dgn.loss.learns_sigma:
    g_params["log_sigma"] = jnp.zeros((), jnp.float32)
  latents = dgn.z_init_std * jax.random.normal(
    jax.random.fold_in(init_key, 1), (dgn.num_train, dgn.z_dim)
  )
  latents = dgn.constrain(latents)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    g_params=g_params,
    latents=latents,
    g_opt_state=dgn.g_optimizer.init(g_params),
    z_opt_state=dgn.z_optimizer.init(latents),
  )


def train_step(dgn: Dgn, state: TrainState, root: jax.Array, data: jax.Array):
  indices = dgn.sample_indices(root, state.step)
  target = data[indices]

  def objective(g_params, z_BxZ):
    prediction = dgn.decode(g_params, z_BxZ)
    loss = dgn.loss(prediction, target, g_params.get("log_sigma"))
    return loss, prediction

  (loss, prediction), (g_grads, z_grads) = jax.value_and_grad(
    objective, argnums=(0, 1), has_aux=True
  )(state.g_params, state.latents[indices])
  # A code drawn twice in one batch gets both gradients, as one shared parameter should.
  table_grads = jnp.zeros_like(state.latents).at[indices].add(z_grads)
  g_updates, g_opt_state = dgn.g_optimizer.update(g_grads, state.g_opt_state, state.g_params)
  z_updates, z_opt_state = dgn.z_optimizer.update(table_grads, state.z_opt_state, state.latents)
  new_state = TrainState(
    step=state.step + 1,
    g_params=optax.apply_updates(state.g_params, g_updates),
    latents=dgn.constrain(optax.apply_updates(state.latents, z_updates)),
    g_opt_state=g_opt_state,
    z_opt_state=z_opt_state,
  )
  batch_psnr = reconstruction.psnr(jnp.clip(prediction, 0.0, 1.0), target).mean()
  return new_state, {"loss": loss, "batch_psnr": batch_psnr}


def train_chunk(dgn: Dgn, state: TrainState, root, data, length: int):
  """`length` steps in one dispatch, fully unrolled: XLA on CPU runs a convolution inside a
  while loop (a rolled scan) about 60 times slower (measured 290 vs 4 ms per step here), so
  conv trainers keep `train.steps_per_dispatch` small and unroll it."""

  def body(state, _):
    return train_step(dgn, state, root, data)

  return jax.lax.scan(body, state, length=length, unroll=True)


@functools.cache
def _jitted_chunk(dgn: Dgn, length: int):
  return jax.jit(functools.partial(train_chunk, dgn, length=length), donate_argnums=0)


def run_chunk(dgn: Dgn, state: TrainState, root, data, length: int):
  return _jitted_chunk(dgn, length)(state, root, data)


@functools.partial(jax.jit, static_argnums=0)
def reconstruct(dgn: Dgn, g_params, latents) -> jax.Array:
  """G(z_i) for every code, clipped to the image range [0, 1]."""
  return jnp.clip(dgn.decode(g_params, latents), 0.0, 1.0)


def evaluate(dgn: Dgn, state: TrainState, data) -> tuple[np.ndarray, dict]:
  """(reconstructions, row): per-image PSNR summaries, exact fraction, sharpness ratio."""
  recon = reconstruct(dgn, state.g_params, state.latents)
  psnr = np.asarray(reconstruction.psnr(recon, data))
  sharp_recon = float(reconstruction.sharpness(recon).mean())
  sharp_data = float(reconstruction.sharpness(data).mean())
  row = {
    "recon_psnr_mean": float(psnr.mean()),
    "recon_psnr_min": float(psnr.min()),
    "recon_psnr_median": float(np.median(psnr)),
    "exact_fraction": float((psnr >= dgn.exact_psnr).mean()),
    "sharpness_ratio": sharp_recon / sharp_data,
  }
  if "log_sigma" in state.g_params:
    row["sigma"] = float(jnp.exp(state.g_params["log_sigma"]))
  return np.asarray(recon), row


def state_digest(state: TrainState) -> str:
  return tree_digest(state)


def train_and_evaluate(config: ml_collections.ConfigDict, work_dir: str) -> dict:
  """Trains (resuming from WORKDIR/checkpoints if present); returns the final eval row."""
  dgn, root, data = build(config)  # every config error surfaces before anything is written
  schedule = loop.Schedule.from_config(config.train)
  workdir.check_resumable(work_dir, config)
  _check_schedule_unchanged(work_dir, config)
  os.makedirs(os.path.join(work_dir, "samples"), exist_ok=True)
  state = init_state(dgn, root)
  ckpts = checkpoints.Checkpoints(work_dir, keep=config.train.keep_checkpoints)
  try:
    start = ckpts.latest_step() or 0
    if start:
      state = ckpts.restore(start, like=state)
      logging.info("Resumed from the checkpoint at step %d.", start)
    workdir.write_config(work_dir, config)
    log = workdir.MetricsLog(work_dir, resume_step=start)
    try:
      state, last_eval = _train_loop(dgn, schedule, state, root, data, start, work_dir, log, ckpts)
    finally:
      log.close()
  finally:
    ckpts.close()
  if config.eval.final_extras:
    from jgen import dgn_eval  # interpolation and sampling: only at the end

    last_eval.update(dgn_eval.final_extras(dgn, state, root, data, work_dir, config))
  plots.metric_curves(
    os.path.join(work_dir, "metrics.png"),
    workdir.read_rows(log.path),
    ["recon_psnr_mean", "exact_fraction", "loss", "sharpness_ratio"],
  )
  return last_eval


def _check_schedule_unchanged(work_dir: str, config) -> None:
  """A cosine decay spans train.num_steps, so changing it on resume changes the run."""
  path = os.path.join(work_dir, "config.json")
  if config.train.lr_decay == "none" or not os.path.exists(path):
    return
  with open(path) as f:
    old_steps = json.load(f)["train"]["num_steps"]
  if old_steps != config.train.num_steps:
    raise workdir.WorkdirMismatchError(
      f"{work_dir} was trained with train.lr_decay={config.train.lr_decay} over "
      f"train.num_steps={old_steps}; resuming with {config.train.num_steps} would change the "
      "learning-rate schedule. Use a new --workdir, or train.lr_decay=none."
    )


def _train_loop(dgn, schedule, state, root, data, start, work_dir, log, ckpts):
  logging.info(
    "Training a DGN on %d images: z_dim %d, G width %d, loss %s, batch %d, %d steps from %d.",
    dgn.num_train,
    dgn.z_dim,
    dgn.generator.width,
    dgn.loss.name,
    dgn.batch_size,
    schedule.num_steps,
    start,
  )
  progress = loop.Progress(start, schedule.num_steps)
  step, pending, last_eval = start, [], None
  while step < schedule.num_steps:
    length = schedule.chunk_length(step)
    state, outputs = run_chunk(dgn, state, root, data, length)
    pending.append((step, outputs))
    step += length
    if not schedule.should_log(step):
      continue
    window = _fetch_window(pending, ckpts)
    pending = []
    steps_per_sec, eta = progress.tick(step)
    row = {"step": step, **window, "steps_per_sec": steps_per_sec}
    row["state_digest"] = state_digest(state)
    if schedule.should_eval(step):
      recon, eval_row = evaluate(dgn, state, data)
      row.update(eval_row)
      last_eval = row
      _save_recon_grid(os.path.join(work_dir, "samples", f"step_{step:08d}.png"), data, recon, row)
    log.write(row)
    if schedule.should_checkpoint(step):
      ckpts.save(step, state)
    logging.info("%s", _progress_line(row, schedule.num_steps, eta))
    progress.restart_window(step)
  if last_eval is None:  # already complete: report the final state without training
    _, eval_row = evaluate(dgn, state, data)
    last_eval = {"step": step, **eval_row, "state_digest": state_digest(state)}
  return state, last_eval


def _fetch_window(pending, ckpts) -> dict:
  fetched = jax.device_get([outputs for _, outputs in pending])
  for (first_step, _), outputs in zip(pending, fetched, strict=True):
    finite = np.isfinite(outputs["loss"])
    if not finite.all():
      bad = first_step + int(np.argmin(finite)) + 1
      raise NonFiniteError(
        f"non-finite loss at step {bad}; training stopped. The last good checkpoint is step "
        f"{ckpts.latest_step()}: lower the learning rates (optimizer.learning_rate, "
        "latent.optimizer.learning_rate) in a new --workdir, or resume from it."
      )
  return {k: float(np.concatenate([o[k] for o in fetched]).mean()) for k in METRIC_NAMES}


def _save_recon_grid(path, data, recon, row, count: int = 16) -> None:
  count = min(count, len(data))
  imgrid.save_grid(
    path,
    [list(np.asarray(data[:count])), list(recon[:count])],
    row_titles=["x_i", "G(z_i)"],
    title=(
      f"step {row['step']}: PSNR mean {row['recon_psnr_mean']:.1f} dB, "
      f"exact {100 * row['exact_fraction']:.0f}%"
    ),
  )


def _progress_line(row: dict, num_steps: int, eta: str) -> str:
  text = (
    f"step {row['step']}/{num_steps} ({100 * row['step'] / num_steps:.0f}%) "
    f"{row['steps_per_sec']:.0f} steps/s, ETA {eta} | loss {row['loss']:.3g} "
    f"batch_psnr {row['batch_psnr']:.1f}"
  )
  if "recon_psnr_mean" in row:
    text += (
      f" | recon_psnr_mean {row['recon_psnr_mean']:.1f} min {row['recon_psnr_min']:.1f} "
      f"exact_fraction {row['exact_fraction']:.3f}"
    )
  return text
