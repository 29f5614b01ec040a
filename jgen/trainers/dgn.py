"""DGN/GLO trainer: a latent table z [N, z_dim] and a conv generator G, fit jointly so that
G(z_i) reproduces every training image x_i (maximum likelihood or a perceptual loss).

One pure `train_step(dgn, state, root, data)` gathers the step's code indices from the core
sampler, takes the gradient of the loss in G's parameters and in the gathered codes, scatters
the codes' gradient into the table, and updates both; the shared run loop (jgen/run/loop.py)
dispatches it. As in gan.py every random draw is `fold_in(root, stream, step)`, so a
checkpoint needs no key.
Evaluation reconstructs all N images: per-image PSNR and the fraction reconstructed exactly.
The final evaluation adds interpolations and samples from densities fitted to the codes.
"""

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jgen.core import optimizers, registry, rng
from jgen.data import digits, samplers
from jgen.datasets import images as image_datasets
from jgen.evals import code_priors, fidelity, memorization
from jgen.evals import latents as latents_eval
from jgen.losses import reconstruction
from jgen.models import dgn as dgn_models
from jgen.run import interface, loop
from jgen.run.interface import TrainerDefaults, dispatch_for
from jgen.trainers import code_flow
from jgen.viz import imgrid

METRIC_NAMES = ("loss", "batch_psnr")
PROJECTIONS = ("none", "sphere")
HELD_OUT_START = digits.HELD_OUT_START


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: also the whole key state of the run
  g_params: Any  # {"net": G's parameters[, "log_sigma": scalar for gaussian_nll]}
  latents: jax.Array  # float32[N, z_dim]: z_i of training image i
  g_opt_state: Any
  z_opt_state: Any


def training_images(config: ml_collections.ConfigDict) -> np.ndarray:
  """The first `data.num_train` of scikit-learn's digits (a fixed, documented subset), or for
  stacked_digits the seed's training set of the GAN and flow configs (the same triples)."""
  n = config.data.num_train
  if config.data.name == "digits" and not 1 <= n <= HELD_OUT_START:
    raise ValueError(
      f"data.num_train must be in [1, {HELD_OUT_START}] (digits from {HELD_OUT_START} on are "
      f"held out for inverse problems), got {n}"
    )
  return image_datasets.training_images(config.data.name, n, config.seed)


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class Dgn(TrainerDefaults):
  generator: flax.linen.Module  # conv or mlp (jgen/models/dgn.py)
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
  # The prior `sample` draws codes from (eval.sample_prior), its options, and for "flow" the
  # workdir of the flow trained on the codes (eval.code_flow_dir).
  sample_prior: str = "gaussian"
  prior_options: tuple = ()
  code_flow_dir: str = ""  # the finished code flow's workdir, for the "flow" prior

  # What the run loop reads besides the fields above (jgen/run/interface.py's Trainer).
  metric_names = METRIC_NAMES
  # batch_psnr is +inf for an exact batch: only the loss says the run went wrong.
  finite_metrics = ("loss",)
  step_by_step, unroll = dispatch_for(convolutional=True, unrolled=True)
  curves = ("recon_psnr_mean", "exact_fraction", "loss", "sharpness_ratio")
  non_finite_hint = (
    "lower the learning rates (optimizer.learning_rate, latent.optimizer.learning_rate)"
  )

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
      generator=dgn_models.make_generator(config.model, image_shape),
      loss=reconstruction.make_loss(config.loss, tuple(image_shape)),
      g_optimizer=optimizers.with_lr_decay(
        optimizers.make_optimizer(config.optimizer), config.train
      ),
      z_optimizer=optimizers.with_lr_decay(
        optimizers.make_optimizer(config.latent.optimizer), config.train
      ),
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
      **_sampling_fields(config),
    )

  def decode(self, g_params, z_NxZ):
    return self.generator.apply(g_params["net"], z_NxZ)

  def constrain(self, z_NxZ):
    """GLO's projection of codes onto the unit sphere (or nothing)."""
    if self.project == "sphere":
      return z_NxZ / jnp.maximum(jnp.linalg.norm(z_NxZ, axis=-1, keepdims=True), 1e-12)
    return z_NxZ

  def describe(self) -> str:
    return (
      f"Training a DGN on {self.num_train} images: z_dim {self.z_dim}, G width "
      f"{self.generator.width}, loss {self.loss.name}, batch {self.batch_size}"
    )

  def init_state(self, root: jax.Array) -> "TrainState":
    return init_state(self, root)

  def step(self, state: "TrainState", root: jax.Array, data):
    return train_step(self, state, root, data)

  def evaluate(self, state: "TrainState", root: jax.Array, data):
    recon, row = evaluate(self, state, data)
    return (np.asarray(data), recon), row

  def sample(self, state: "TrainState", key: jax.Array, num_samples: int) -> np.ndarray:
    """G(z), z drawn from eval.sample_prior over the learned codes (jgen/run/interface.py): a
    Gaussian fitted to them (from key's EVAL stream; the default), another code prior (its
    seed drawn from key), or the flow trained on the codes (eval.code_flow_dir)."""
    if self.sample_prior == "gaussian":
      latents = state.latents
      return np.asarray(sample_fitted_gaussian(self, state.g_params, latents, key, num_samples))
    if self.sample_prior == "flow":
      codes = code_flow.sample_trained(self.code_flow_dir, key, num_samples)
    else:
      seed = int(jax.random.randint(rng.stream_key(key, rng.Stream.EVAL), (), 0, 2**31 - 1))
      options = dict(self.prior_options)
      codes = code_priors.sample_codes(
        self.sample_prior, np.asarray(state.latents), num_samples, seed, **options
      )
    codes = self.constrain(jnp.asarray(codes, jnp.float32))
    return np.asarray(reconstruct(self, state.g_params, codes))

  def picture(self, path: str, samples, title: str, row: dict | None) -> None:
    data, recon = samples
    count = min(16, len(data))
    imgrid.save_grid(
      path,
      [list(data[:count]), list(recon[:count])],
      row_titles=["x_i", "G(z_i)"],
      title=(
        f"{title}: PSNR mean {row['recon_psnr_mean']:.1f} dB, "
        f"exact {100 * row['exact_fraction']:.0f}%"
      ),
    )

  def progress_text(self, row: dict) -> str:
    text = f"loss {row['loss']:.3g} batch_psnr {row['batch_psnr']:.1f}"
    if "recon_psnr_mean" in row:
      text += (
        f" | recon_psnr_mean {row['recon_psnr_mean']:.1f} min {row['recon_psnr_min']:.1f} "
        f"exact_fraction {row['exact_fraction']:.3f}"
      )
    return text

  def finalize(self, state, root, data, work_dir: str, config, final_row: dict) -> dict:
    """Interpolations and samples from densities fitted to the codes (eval.final_extras)."""
    if not config.eval.final_extras:
      return final_row
    return {**final_row, **final_extras(self, state, root, data, work_dir, config)}


def build(config: ml_collections.ConfigDict) -> tuple[Dgn, jax.Array, jax.Array]:
  """(the validated Dgn, its root key, its training images on the device)."""
  images = training_images(config)
  dgn = Dgn.from_config(config, images.shape[1:])
  return dgn, rng.root_key(config.seed), jnp.asarray(images)


def init_state(dgn: Dgn, root: jax.Array) -> TrainState:
  return interface.compiled(
    dgn, "init_state", lambda: jax.jit(functools.partial(_init_state, dgn))
  )(root)


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
  batch_psnr = fidelity.psnr(jnp.clip(prediction, 0.0, 1.0), target).mean()
  return new_state, {"loss": loss, "batch_psnr": batch_psnr}


@functools.partial(jax.jit, static_argnums=0)
def reconstruct(dgn: Dgn, g_params, latents) -> jax.Array:
  """G(z_i) for every code, clipped to the image range [0, 1]."""
  return jnp.clip(dgn.decode(g_params, latents), 0.0, 1.0)


@functools.partial(jax.jit, static_argnums=(0, 4))
def sample_fitted_gaussian(dgn: Dgn, g_params, latents, key: jax.Array, num_samples: int):
  """G(z), z ~ N(mean, covariance) of the codes (the covariance regularized as
  latents_eval.fit_and_sample's), projected as the codes are; clipped to [0, 1]."""
  mean = latents.mean(axis=0)
  centered = latents - mean
  covariance = centered.T @ centered / max(len(latents) - 1, 1)
  chol = jnp.linalg.cholesky(covariance + 1e-5 * jnp.eye(dgn.z_dim))
  noise = jax.random.normal(rng.stream_key(key, rng.Stream.EVAL), (num_samples, dgn.z_dim))
  return jnp.clip(dgn.decode(g_params, dgn.constrain(mean + noise @ chol.T)), 0.0, 1.0)


def evaluate(dgn: Dgn, state: TrainState, data) -> tuple[np.ndarray, dict]:
  """(reconstructions, row): per-image PSNR summaries, exact fraction, sharpness ratio."""
  recon = reconstruct(dgn, state.g_params, state.latents)
  psnr = np.asarray(fidelity.psnr(recon, data))
  sharp_recon = float(fidelity.sharpness(recon).mean())
  sharp_data = float(fidelity.sharpness(data).mean())
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


def train_and_evaluate(config: ml_collections.ConfigDict, work_dir: str) -> dict:
  """Trains (resuming from WORKDIR/checkpoints if present); returns the final eval row."""
  dgn, root, data = build(config)  # every config error surfaces before anything is written
  return loop.train(dgn, config, work_dir, root, data)


def final_extras(dgn: Dgn, state: TrainState, root, data, work_dir: str, config) -> dict:
  """interpolation.png, samples_{gaussian,gmm}.png and the sample metrics of both densities."""
  latents = np.asarray(state.latents)
  n = len(latents)
  # Fixed pairs from the EVAL stream: which codes are interpolated never depends on training.
  pair_key = rng.stream_key(root, rng.Stream.EVAL)
  picks = np.asarray(jax.random.choice(pair_key, n, (4, 2), replace=n < 8))
  pairs = [(int(i), int(j)) for i, j in picks]
  rows, titles = [], []
  for kind in ("linear", "spherical"):
    codes = latents_eval.interpolations(latents, pairs, 9, kind)
    images = reconstruct(dgn, state.g_params, jnp.asarray(codes.reshape(-1, dgn.z_dim)))
    images = np.asarray(images).reshape(len(pairs), 9, *dgn.image_shape)
    for (i, j), row in zip(pairs, images, strict=True):
      rows.append(list(row))
      titles.append(f"{kind[:3]} {i}->{j}")
  imgrid.save_grid(
    os.path.join(work_dir, "interpolation.png"),
    rows,
    titles,
    "G((1-t) z_i + t z_j) and slerp, t = 0 .. 1",
  )
  classifier = latents_eval.digit_classifier_or_none()
  extras = {"classifier_metrics": classifier is not None}
  held_out = None
  if config.eval.get("held_out_metrics", False):
    held_out = digits.load_digits()[0][HELD_OUT_START:]
    # What real digits the generator never saw score: the reference for memorization.
    extras["held_out_memorization_rate"] = memorization.memorization_rate(held_out, data)["rate"]
  for kind in _priors(config):
    options = _prior_options(kind, config, n)
    if kind == "flow":
      codes = code_flow.sample_codes(
        config.code_flow, latents, work_dir, config, config.eval.num_samples
      )
    else:
      codes = code_priors.sample_codes(
        kind, latents, config.eval.num_samples, config.seed, **options
      )
    codes = np.asarray(dgn.constrain(jnp.asarray(codes)))
    samples = np.asarray(reconstruct(dgn, state.g_params, jnp.asarray(codes)))
    imgrid.save_grid(
      os.path.join(work_dir, f"samples_{kind}.png"),
      [list(samples[r * 16 : (r + 1) * 16]) for r in range(min(4, len(samples) // 16 or 1))],
      title=f"G(z), z ~ {kind} fitted to the {n} learned codes",
    )
    metrics = latents_eval.sample_metrics(samples, data, classifier, held_out)
    for key, value in metrics.items():
      extras[f"{kind}_{key}"] = value
  return extras


def _prior_options(kind: str, config, num_codes: int) -> dict:
  if kind == "gmm":
    return {"components": config.eval.gmm_components}
  if kind == "knn":
    return {"k": min(config.eval.get("knn_k", 5), num_codes - 1)}
  return {}


def _sampling_fields(config) -> dict:
  """The Dgn fields of its `sample` call, from eval.sample_prior and eval.code_flow_dir."""
  kind = config.eval.get("sample_prior", "gaussian")
  registry.choose("eval.sample_prior", kind, {**code_priors.CODE_PRIORS, "flow": None})
  fields = {"sample_prior": kind}
  fields["prior_options"] = tuple(_prior_options(kind, config, config.data.num_train).items())
  if kind == "flow":
    if not config.eval.get("code_flow_dir"):
      raise ValueError(
        "eval.sample_prior=flow samples the flow trained on the codes: set eval.code_flow_dir "
        "to a finished DGN run's WORKDIR/code_flow (configs/dgn.py:priors=...,flow trains it)"
      )
    fields["code_flow_dir"] = config.eval.code_flow_dir
  return fields


def _priors(config) -> list[str]:
  """eval.priors: the comma-separated code priors final_extras samples (jgen/evals/code_priors,
  and "flow": flow matching trained on the codes, jgen/trainers/code_flow.py)."""
  names = [name.strip() for name in config.eval.get("priors", "gaussian,gmm").split(",")]
  for name in names:
    registry.choose("eval.priors entry", name, {**code_priors.CODE_PRIORS, "flow": None})
  if "flow" in names and "code_flow" not in config:
    raise ValueError(
      "eval.priors 'flow' trains a flow on the codes from the config's code_flow section; "
      "use configs/dgn.py:priors=...,flow, which adds it"
    )
  return names
