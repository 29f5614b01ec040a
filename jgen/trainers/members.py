"""What the GAN and denoising trainers share: the data order, the population and its sampling.

Both train populations of members on any dataset of jgen/datasets, drawing the same training
set (Stream.TRAIN_SET) and index stream (config.sampler), so a denoiser and a GAN of the same
seed see the same examples in the same order. `trainer` below is either (gan.Gan,
denoise.Denoiser): it has data, sample_indices, num_train, batch_size, population, variants,
mesh, eval_config.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jgen.core import parallel, rng
from jgen.data import samplers
from jgen.datasets import evaluators
from jgen.run import interface, variants


def data_order(config, data, member_variants, convolutional: bool) -> dict:
  """The validated data order and population settings, as a trainer's fields: sample_indices
  (None: fresh draws), num_train, batch_size (global), population, variants and the dispatch.

  Raises ValueError naming the fix for any bad setting.
  """
  num_train = config.data.num_train
  if num_train < 1:
    raise ValueError(f"data.num_train must be >= 1, got {num_train}")
  if config.population.size < 1:
    raise ValueError(f"population.size must be >= 1, got {config.population.size}")
  if config.data.fresh_samples:
    if len(data.sample_shape) != 1:
      raise ValueError("data.fresh_samples applies to 2D mixtures only; set it to False")
    if config.sampler.kind != "with_replacement":
      raise ValueError(
        "data.fresh_samples draws i.i.d. points from the mixture every step, which has "
        f"no index order; set sampler.kind=with_replacement (got {config.sampler.kind!r})"
      )
    sample_indices, batch_size = None, config.train.batch_size
  else:
    batch_size = samplers.global_batch_size(
      config.sampler, num_examples=num_train, batch_size=config.train.batch_size
    )
    sample_indices = variants.make_sampler(config, member_variants, num_examples=num_train)
  if data.on_host and config.population.size > 1:
    raise ValueError(
      f"{data.name} is read on the host, one batch per step: populations need the data on "
      "the device; raise data.device_bytes_limit if it fits, or set population.size=1"
    )
  return {
    "sample_indices": sample_indices,
    "num_train": num_train,
    "batch_size": batch_size,
    "population": config.population.size,
    "variants": member_variants,
    "trace": config.collapse.trace and config.population.size == 1,
    "evaluators": evaluators.parse(config.get("evals"), config.train.log_every),
    "step_by_step": interface.dispatch_for(convolutional, host_fed=data.on_host).step_by_step,
  }


def make_mesh(config) -> jax.sharding.Mesh:
  """The run's devices: a population split over `population.devices` (0: all), whole members
  on each; a single run on every device but those jgen split off the CPU for populations."""
  population = config.population
  return parallel.make_mesh(population=population.size, wanted=population.get("devices", 0))


def per_member(trainer, fn):
  """`fn` for a single run, vmapped over a population's leading axis otherwise."""
  return fn if trainer.population == 1 else jax.vmap(fn, axis_name=variants.MEMBER_AXIS)


def state_sharding(trainer) -> jax.sharding.NamedSharding:
  """Replicated for a single run; a population is split over devices by member."""
  if trainer.population == 1:
    return parallel.replicated(trainer.mesh)
  return parallel.population_sharding(trainer.mesh, trainer.population)


def run_root(trainer, seed: int) -> jax.Array:
  """The run's root key; for a population, member i's root is that of its seed.

  Member i's seed is seed + i (with variants: seed + i % seeds_per_variant), so it draws
  exactly the keys (data order, z, init) of a standalone run with that seed; README
  "Populations" says how close their results are.
  """
  if trainer.population == 1:
    return rng.root_key(seed)
  seeds = variants.member_seeds(trainer.variants, seed, trainer.population)
  return jax.vmap(rng.root_key)(jnp.asarray(seeds))


def training_set(trainer, root: jax.Array, draw=None):
  """The fixed training set of each member, drawn once from its root; `draw(key)` replaces the
  dataset's own draw (PacGAN's packs). The program is kept on the trainer, so `draw` must be
  fixed by the trainer alone: a trainer's second call reuses the first call's `draw`."""

  def draw_one(root):
    key = rng.stream_key(root, rng.Stream.TRAIN_SET)
    return trainer.data.training_set(key, trainer.num_train) if draw is None else draw(key)

  def build():
    return jax.jit(per_member(trainer, draw_one), out_shardings=trainer.state_sharding)

  return interface.compiled(trainer, "training_set", build)(root)


def step_data(trainer, config, root, data, start: int, end: int):
  """What steps (start, end] read: the training set on the device, or for data read on the
  host, the batches of exactly those steps."""
  if not trainer.data.on_host:
    return data
  return trainer.data.host_batches(
    trainer.sample_indices, root, trainer.batch_size, start, end, config.data.host_workers
  )


def draw_real(trainer, root: jax.Array, data, step: jax.Array):
  """(what the step saw: its indices, or its fresh points; the real batch).

  `data` is the training set on the device, or this step's batch as the host read it.
  """
  if trainer.sample_indices is None:
    key = rng.step_key(root, rng.Stream.FRESH_DATA, step)
    fresh = trainer.data.fresh_batch(key, trainer.batch_size)
    return fresh, fresh
  indices = trainer.sample_indices(root, step)
  if trainer.data.on_host:  # the host read this step's batch by the same indices
    return indices, trainer.data.from_host(data)
  return indices, trainer.data.gather(data, indices)


def shard_batch(trainer, x: jax.Array) -> jax.Array:
  # A population is split over devices by member, so each member's batch stays whole.
  return parallel.shard_leading_axis(x, trainer.mesh) if trainer.population == 1 else x


def evaluate_samples(trainer, samples: np.ndarray, extra: dict | None = None) -> dict:
  """The dataset's evaluation of each member's samples (and `extra`): for a population, each
  metric is a list over members."""
  extra = extra or {}
  if trainer.population == 1:
    return {**trainer.data.evaluate(samples, trainer.eval_config), **extra}
  rows = [{**trainer.data.evaluate(member, trainer.eval_config), **extra} for member in samples]
  return {key: [row[key] for row in rows] for key in rows[0]}


def population_modes_text(trainer, row: dict) -> str:
  """The modes of a population's row, for the progress line ('' when the row has none)."""
  if "modes" not in row:
    return ""
  counts, members, num_modes = np.asarray(row["modes"]), len(row["modes"]), trainer.data.num_modes
  return (
    f" | modes mean {counts.mean():.2f}/{num_modes} (min {counts.min()}, max "
    f"{counts.max()}), members with all modes {int((counts == num_modes).sum())}/{members}"
  )
