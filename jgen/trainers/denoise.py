"""Denoising trainer: flow matching, noise prediction, or the essay's discriminator flow.

`config.objective.name` chooses what one network learns from noised data
(jgen/losses/denoising.py); the samplers turn noise into samples at every evaluation:
Euler or Heun on the ODE (flow matching, noise prediction), DDPM's ancestral steps (noise
prediction), or gradient ascent on D's log-odds (the discriminator flow). The data, its order,
the populations, the evaluation and the outputs are the GAN trainer's (jgen/trainers/gan.py):
the same dataset, training set (Stream.TRAIN_SET) and index stream (config.sampler), so a
denoiser and a GAN of the same seed see the same examples in the same order.

All randomness is fold_in(root, stream, step): the noise levels (Stream.NOISE_LEVEL), the
source or added noise (Stream.SOURCE_NOISE); evaluation noise is fixed per run (Stream.EVAL,
and Stream.SAMPLING_NOISE for ancestral steps), so curves show the model changing.
"""

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn

from jgen import datasets
from jgen.collapse import recorder
from jgen.core import optimizers, parallel, registry, rng
from jgen.losses import denoising, level_ratio
from jgen.models import denoisers
from jgen.run import interface, loop, trace, variants
from jgen.run.interface import TrainerDefaults
from jgen.trainers import members


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: also the whole key state of the run
  params: Any
  opt_state: Any


# Hashed by identity: a static jit argument. kw_only: see jgen/run/interface.py.
@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Denoiser(TrainerDefaults):
  """Everything about a run that is fixed: objective, network, optimizer, data and its order."""

  objective: str
  network: nn.Module
  optimizer: optax.GradientTransformation
  data: datasets.Dataset
  sample_indices: Callable[[jax.Array, jax.Array], jax.Array] | None  # None: fresh draws
  num_train: int
  batch_size: int
  sampling: denoising.Sampling
  eval_samples: int
  eval_batch: int
  eval_config: ml_collections.ConfigDict
  # One dispatch per step for images on CPU: XLA:CPU runs convolutions inside a scanned loop
  # many times slower than the same step alone (measured: jgen/run/loop.py).
  step_by_step: bool
  trace: bool
  population: int
  variants: variants.Variants | None
  mesh: jax.sharding.Mesh
  evaluators: tuple = ()  # config.evals (jgen/datasets/evaluators.py)
  metric_names: tuple
  level_power: float  # > 1: training levels nearer the data (training_levels)
  # Sums over devices in mesh order (config.deterministic; parallel.mean_over_devices): the
  # loss and its gradient are per-device means averaged in that order.
  fixed_order_sums: bool = False

  # What the run loop reads besides the fields above (jgen/run/interface.py's Trainer).
  finite_metrics = ("loss",)
  traced_parts = ("params",)
  non_finite_hint = "lower optimizer.learning_rate"

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, data=None, mesh=None) -> "Denoiser":
    """Builds and validates; `data` replaces the dataset config.data names (a study's own
    images). Raises ValueError naming the fix for any bad setting."""
    objective = config.objective.name
    registry.choose("objective.name", objective, dict.fromkeys(denoising.OBJECTIVES))
    methods = denoising.METHODS[objective]
    if config.sampling.method not in methods:
      raise ValueError(
        f"sampling.method={config.sampling.method!r} does not apply to objective {objective}; "
        f"valid choices: {', '.join(methods)}"
      )
    if config.sampling.num_steps < 1:
      raise ValueError(f"sampling.num_steps must be >= 1, got {config.sampling.num_steps}")
    if objective == "discriminator_flow" and config.sampling.step_size <= 0:
      raise ValueError(f"sampling.step_size must be > 0, got {config.sampling.step_size}")
    if config.sampling.final_step_size < 0 or config.objective.level_power <= 0:
      raise ValueError(
        "sampling.final_step_size must be >= 0 and objective.level_power > 0, got "
        f"{config.sampling.final_step_size}, {config.objective.level_power}"
      )
    data = data if data is not None else datasets.get_dataset(config.data)
    member_variants = variants.parse(config)
    is_2d = len(data.sample_shape) == 1
    order = members.data_order(config, data, member_variants, convolutional=not is_2d)
    batch_size = order["batch_size"]
    if objective == "level_ratio" and (not is_2d or config.objective.num_levels < 2):
      raise ValueError(
        "objective level_ratio needs 2D points and objective.num_levels >= 2, got "
        f"{data.name} and {config.objective.num_levels}"
      )
    if objective == "discriminator_flow":
      network = denoisers.make_critic(config.model)
      metric_names = ("loss", "d_noise", "d_data")
    elif objective == "level_ratio":
      network = denoisers.LevelCritic(config.model.width, config.model.depth, config.model.time_dim)
      metric_names = ("loss", "accuracy")
    else:
      network = denoisers.make_denoiser(config.model, data.sample_shape)
      metric_names = ("loss",)
    mesh = mesh if mesh is not None else members.make_mesh(config)
    return cls(
      objective=objective,
      network=network,
      optimizer=optimizers.with_lr_decay(
        variants.make_optimizer(config, member_variants), config.train
      ),
      data=data,
      **order,
      sampling=_sampling(config, data),
      level_power=config.objective.level_power,
      eval_samples=config.eval.num_samples,
      eval_batch=config.eval.sample_batch,
      eval_config=config.eval,
      mesh=mesh,
      metric_names=metric_names,
      fixed_order_sums=parallel.sums_in_fixed_order(
        config.get("deterministic", False), mesh, batch_size, config.population.size
      ),
    )

  @property
  def is_image(self) -> bool:
    return len(self.data.sample_shape) == 3

  @property
  def curves(self) -> tuple[str, ...]:
    kept = tuple(c for c in self.data.curves if c not in ("d_loss", "g_loss"))
    return (*kept, "loss")

  @property
  def state_sharding(self) -> jax.sharding.NamedSharding:
    return members.state_sharding(self)

  def evaluations_per_sample(self) -> int:
    return self.sampling.evaluations_per_sample(self.objective)

  def describe(self) -> str:
    return (
      f"Training a {self.objective} {type(self.network).__name__} on {self.data.name}: batch "
      f"{self.batch_size}, sampling {self.sampling.method} x {self.sampling.num_steps} steps "
      f"({self.evaluations_per_sample()} evaluations per sample), {self.mesh.size} device(s)"
    )

  def init_state(self, root: jax.Array) -> TrainState:
    def build():
      init = members.per_member(self, functools.partial(_init_state, self))
      return jax.jit(init, out_shardings=self.state_sharding)

    return interface.compiled(self, "init_state", build)(root)

  def step(self, state: TrainState, root: jax.Array, data):
    return members.per_member(self, functools.partial(train_step, self))(state, root, data)

  def step_data(self, config, root, data, start: int, end: int):
    return members.step_data(self, config, root, data, start, end)

  def evaluate(self, state: TrainState, root: jax.Array, data=None):
    return evaluate(self, state, root)

  def sample(self, state: TrainState, key: jax.Array, num_samples: int) -> np.ndarray:
    """The sampler run from noise of key's EVAL stream (jgen/run/interface.py)."""
    return generate(self, state.params, key, num_samples)

  def picture(self, path: str, samples, title: str, row: dict | None) -> None:
    self.data.picture(path, samples, title, row)

  def progress_text(self, row: dict) -> str:
    if isinstance(row["loss"], list):
      return f"mean loss {np.mean(row['loss']):.4f}" + members.population_modes_text(self, row)
    text = f"loss {row['loss']:.4f}"
    if "d_noise" in row:
      text += f" D(noise) {row['d_noise']:.3f} D(data) {row['d_data']:.3f}"
    if "diversity" in row:
      text += f" | {self.data.progress_text(row)}"
    return text


run_root = members.run_root
training_set = members.training_set
draw_real = members.draw_real


def build(config: ml_collections.ConfigDict, data=None) -> tuple[Denoiser, jax.Array, Any]:
  """(the validated Denoiser, its root key(s), its training set or None for fresh draws)."""
  den = Denoiser.from_config(config, data=data)
  root = run_root(den, config.seed)
  return den, root, None if den.sample_indices is None else training_set(den, root)


def train_and_evaluate(config: ml_collections.ConfigDict, work_dir: str, data=None) -> dict:
  """Trains (resuming from WORKDIR/checkpoints if present); returns the final eval row."""
  den, root, train_set = build(config, data)
  return loop.train(den, config, work_dir, root, train_set, observers=[recorder.CaseRecorder()])


def _init_state(den: Denoiser, root: jax.Array) -> TrainState:
  x = jnp.zeros((1, *den.data.sample_shape), jnp.float32)
  key = rng.stream_key(root, rng.Stream.INIT_G)
  if den.objective == "discriminator_flow":
    params = den.network.init(key, x)
  else:
    params = den.network.init(key, x, jnp.zeros((1,), jnp.float32))
  opt_state = variants.set_member_hyperparams(den.variants, den.optimizer.init(params))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)


def to_model(den: Denoiser, x: jax.Array) -> jax.Array:
  """Images in [0, 1] become [-1, 1], the scale of the unit Gaussian source; points stay."""
  return 2.0 * x - 1.0 if den.is_image else x


def from_model(den: Denoiser, x: jax.Array) -> jax.Array:
  return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0) if den.is_image else x


def _sampling(config, data) -> denoising.Sampling:
  """config.sampling; with `reach_every_mode`, the ascent's steps scaled so that it can travel
  from any likely start to the farthest mode (denoising.reach_travel)."""
  sampling = denoising.Sampling(
    config.sampling.method,
    config.sampling.num_steps,
    config.sampling.step_size,
    config.sampling.final_step_size,
    config.sampling.normalize,
    config.objective.s_min,
    config.objective.get("num_levels", 0),
  )
  if not config.sampling.get("reach_every_mode", False):
    return sampling
  if sampling.method != "ascent" or not sampling.normalize or not hasattr(data, "mixture"):
    raise ValueError(
      "sampling.reach_every_mode scales a normalized ascent (sampling.method='ascent', "
      "sampling.normalize=True) on a 2D mixture; set it to False"
    )
  mixture = data.mixture
  return denoising.with_travel(sampling, denoising.reach_travel(mixture.means_Kx2, mixture.sigma))


def training_levels(den: Denoiser, uniform_B: jax.Array) -> jax.Array:
  """Each example's level in [0, 1] in its objective's convention (noise prediction: 0 is data;
  the others: 1 is data), warped towards the data by `level_power`."""
  data_end = 0.0 if den.objective == "noise_prediction" else 1.0
  return denoising.warp_levels(uniform_B, den.level_power, data_end)


def objective_terms(den: Denoiser, params, x1, noise, level):
  """(loss, metrics) of the objective on data x1 (model scale), noise and levels in [0, 1]."""
  apply = functools.partial(den.network.apply, params)
  if den.objective == "flow_matching":
    loss = denoising.flow_matching_loss(apply, noise, x1, level)
    return loss, {"loss": loss}
  if den.objective == "noise_prediction":
    s = den.sampling.s_min + (1.0 - den.sampling.s_min) * level
    loss = denoising.noise_prediction_loss(apply, x1, noise, s)
    return loss, {"loss": loss}
  if den.objective == "level_ratio":
    loss, accuracy = level_ratio.level_ratio_loss(apply, noise, x1, level, den.sampling.num_levels)
    return loss, {"loss": loss, "accuracy": accuracy}
  loss, d_noise, d_data = denoising.discriminator_flow_loss(apply, noise, x1, level)
  return loss, {"loss": loss, "d_noise": d_noise, "d_data": d_data}


def train_step(den: Denoiser, state: TrainState, root: jax.Array, data):
  """One update of the network on one batch; returns (state, metrics of this step)."""
  step = state.step
  seen, real = members.draw_real(den, root, data, step)
  x1 = members.shard_batch(den, to_model(den, real))
  noise = jax.random.normal(rng.step_key(root, rng.Stream.SOURCE_NOISE, step), x1.shape)
  uniform = jax.random.uniform(rng.step_key(root, rng.Stream.NOISE_LEVEL, step), x1.shape[:1])
  level = training_levels(den, uniform)
  noise, level = members.shard_batch(den, noise), members.shard_batch(den, level)

  value_and_grad = jax.value_and_grad(functools.partial(objective_terms, den), has_aux=True)
  if den.fixed_order_sums:
    value_and_grad = functools.partial(parallel.mean_over_devices, value_and_grad, den.mesh)
  (_, metrics), grads = value_and_grad(state.params, x1, noise, level)
  updates, opt_state = den.optimizer.update(grads, state.opt_state, state.params)
  new_state = TrainState(
    step=step + 1, params=optax.apply_updates(state.params, updates), opt_state=opt_state
  )
  if den.trace:
    metrics["trace"] = trace.trace_row(seen, new_state.params)
  return new_state, metrics


def generate_from(den: Denoiser, params, noise: jax.Array, key: jax.Array) -> jax.Array:
  """Samples (data scale) from `noise` (model scale) for one member; `key`: ancestral noise."""
  apply = functools.partial(den.network.apply, params)
  if den.objective == "discriminator_flow":
    x = denoising.ascend(apply, noise, den.sampling)
  elif den.objective == "level_ratio":
    x = level_ratio.annealed_langevin(apply, noise, key, den.sampling)
  elif den.sampling.method == "ancestral":
    x = denoising.ancestral(apply, noise, key, den.sampling.num_steps)
  else:
    x = denoising.sample_ode(den.objective, apply, noise, den.sampling)
  return from_model(den, x)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _eval_noise(den: Denoiser, key: jax.Array, num_samples: int):
  def one(key):
    shape = (num_samples, *den.data.sample_shape)
    return jax.random.normal(rng.stream_key(key, rng.Stream.EVAL), shape)

  return members.per_member(den, one)(key)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _generate_chunk(den: Denoiser, params, noise, root, chunk: int):
  def one(params, noise, root):
    key = jax.random.fold_in(rng.stream_key(root, rng.Stream.SAMPLING_NOISE), chunk)
    return generate_from(den, params, noise, key)

  return members.per_member(den, one)(params, noise, root)


def generate(den: Denoiser, params, key: jax.Array, num_samples: int) -> np.ndarray:
  """`num_samples` samples from key's evaluation noise (given the run's root, the same at
  every evaluation), in chunks of `eval.sample_batch` (the memory of an image sampler grows
  with the chunk)."""
  noise = _eval_noise(den, key, num_samples)
  axis = 0 if den.population == 1 else 1
  chunks = []
  for chunk, first in enumerate(range(0, num_samples, den.eval_batch)):
    part = jax.lax.slice_in_dim(noise, first, min(first + den.eval_batch, num_samples), axis=axis)
    chunks.append(np.asarray(_generate_chunk(den, params, part, key, chunk)))
  return np.concatenate(chunks, axis=axis)


def evaluate(den: Denoiser, state: TrainState, root: jax.Array) -> tuple[np.ndarray, dict]:
  """Samples and the dataset's evaluation of them, with the sampling cost: evaluations per
  sample, evaluations in all (samples x per sample) and the seconds sampling took."""
  started = time.perf_counter()
  samples = den.sample(state, root, den.eval_samples)
  seconds = time.perf_counter() - started
  cost = {
    "evaluations_per_sample": den.evaluations_per_sample(),
    "sampling_evaluations": den.evaluations_per_sample() * den.eval_samples,
    "sampling_seconds": round(seconds, 3),
  }
  return samples, members.evaluate_samples(den, samples, cost)
