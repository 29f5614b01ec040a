"""GAN trainer: per-sample or set discriminators, exact data order, any dataset.

The pure update, `train_step(gan, state, root, data)` with the D step and the G step, is
jgen/trainers/gan_step.py; the shared run loop (jgen/run/loop.py) scans it, resumes, logs,
evaluates and records cases; this module builds and validates the spec it reads. All
randomness is `fold_in(root, stream, step)`, so the state alone (its step counter included)
determines the rest of the run, and a checkpoint needs no key.

The data is any dataset of jgen/datasets (2D mixtures with MLP models, images with conv
models): the step gathers its batch by index on the device, or takes the batch the host read
by the same indices.

Options for PacGAN's official protocol (configs/pacgan.py sets them; a config without them gets
the defaults): `train.packing` ("grouped": the batch of samples is split into sets by a keyed
permutation; "packs": the batch is `train.batch_size` packs of `model.set_size` samples, real
packs from a fixed table of with-replacement draws, fake packs from one generator pass per pack
slot), `train.update_rule` ("alternating": D's step, then G's against the new D;
"simultaneous": both gradients at the old parameters), a BatchNorm generator (its statistics
live in g_params["batch_stats"], beside g_params["params"], which alone the optimizer updates)
and `eval.bn_refresh_batches`.
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn

from jgen import datasets, models
from jgen.collapse import recorder
from jgen.core import optimizers, parallel, registry, rng
from jgen.losses import adversarial as losses
from jgen.run import interface, loop, variants
from jgen.run.interface import TrainerDefaults
from jgen.trainers import gan_step, members
from jgen.trainers.gan_step import METRIC_NAMES, TrainState

PACKINGS = ("grouped", "packs")
UPDATE_RULES = ("alternating", "simultaneous")


# Hashed by identity: a static jit argument. kw_only: see jgen/run/interface.py.
@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Gan(TrainerDefaults):
  """Everything about a run that is fixed: models, optimizers, loss, data and its order."""

  generator: nn.Module
  discriminator: nn.Module
  g_optimizer: optax.GradientTransformation
  d_optimizer: optax.GradientTransformation
  loss: losses.GanLoss
  gp_weight: float
  data: datasets.Dataset
  sample_indices: Callable[[jax.Array, jax.Array], jax.Array] | None  # None: fresh draws
  num_train: int
  batch_size: int  # global: samples per step, real and fake alike
  set_size: int
  z_dim: int
  eval_samples: int
  eval_config: ml_collections.ConfigDict
  # One dispatch per step instead of a lax.scan: XLA:CPU runs convolutions inside a while loop
  # many times slower than the same step alone (measured: jgen/run/loop.py), so image runs on
  # CPU loop in Python. The step itself is the same jitted function either way.
  step_by_step: bool
  trace: bool  # per-step digests for replay (jgen/run/trace.py); single runs only
  population: int  # independent members trained in one program (vmap); 1 = a plain run
  variants: variants.Variants | None  # same-shaped hyper-parameter variants among the members
  mesh: jax.sharding.Mesh
  evaluators: tuple = ()  # config.evals (jgen/datasets/evaluators.py)
  packing: str = "grouped"  # PACKINGS; with "packs", batch_size counts packs
  update_rule: str = "alternating"  # UPDATE_RULES
  g_batch_norm: bool = False  # g_params holds {"params", "batch_stats"}
  # Before each evaluation, this many batches of generator statistics refresh the population
  # statistics (PacGAN's training-set monitor applies its BatchNorm updates at every epoch end).
  bn_refresh_batches: int = 0
  # Sums over devices in mesh order (config.deterministic; jgen/trainers/gan_step.py).
  fixed_order_sums: bool = False

  # What the run loop reads besides the fields above (jgen/run/interface.py's Trainer).
  metric_names = METRIC_NAMES
  finite_metrics = METRIC_NAMES
  traced_parts = ("g_params", "d_params")
  non_finite_hint = "lower the learning rate or change the loss"

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, mesh=None) -> "Gan":
    """Builds and validates; raises ValueError naming the fix for any bad setting."""
    data = datasets.get_dataset(config.data)
    is_2d = isinstance(data, datasets.MixtureData)
    member_variants = variants.parse(config)
    order = members.data_order(config, data, member_variants, convolutional=not is_2d)
    batch_size = order["batch_size"]
    packing = config.train.get("packing", "grouped")
    update_rule = config.train.get("update_rule", "alternating")
    registry.choose("train.packing", packing, dict.fromkeys(PACKINGS))
    registry.choose("train.update_rule", update_rule, dict.fromkeys(UPDATE_RULES))
    set_size = config.model.set_size
    if set_size < 1 or (packing == "grouped" and batch_size % set_size):
      raise ValueError(
        f"the batch of {batch_size} samples must split into sets of model.set_size="
        f"{set_size}; choose a set size that divides the batch"
      )
    if packing == "packs" and (not is_2d or config.data.fresh_samples):
      raise ValueError(
        "train.packing='packs' draws packs from a fixed 2D training set; use a 2D mixture "
        "with data.fresh_samples=False, or train.packing='grouped'"
      )
    g_batch_norm = config.model.generator.get("batch_norm", False)
    bn_refresh_batches = config.eval.get("bn_refresh_batches", 0)
    if bn_refresh_batches < 0 or (bn_refresh_batches and not g_batch_norm):
      raise ValueError(
        f"eval.bn_refresh_batches={bn_refresh_batches} needs >= 0 and a BatchNorm generator "
        "(model.generator.batch_norm=True); set it to 0"
      )
    mesh = mesh if mesh is not None else members.make_mesh(config)
    num_sets = batch_size if packing == "packs" else batch_size // set_size
    if is_2d:
      generator = models.make_generator(config.model, data_dim=2)
      discriminator = models.make_discriminator(config.model)
    else:
      generator = models.make_image_generator(config.model, data.sample_shape)
      discriminator = models.make_image_discriminator(config.model)
    return cls(
      generator=generator,
      discriminator=discriminator,
      g_optimizer=optimizers.with_lr_decay(
        variants.make_optimizer(config, member_variants), config.train
      ),
      d_optimizer=optimizers.with_lr_decay(
        variants.make_optimizer(config, member_variants), config.train
      ),
      loss=losses.get_loss(config.loss.name),
      gp_weight=config.loss.gp_weight,
      data=data,
      **order,
      set_size=set_size,
      z_dim=config.model.generator.z_dim,
      eval_samples=config.eval.num_samples,
      eval_config=config.eval,
      mesh=mesh,
      packing=packing,
      update_rule=update_rule,
      g_batch_norm=g_batch_norm,
      bn_refresh_batches=bn_refresh_batches,
      fixed_order_sums=parallel.sums_in_fixed_order(
        config.get("deterministic", False), mesh, num_sets, config.population.size
      ),
    )

  @property
  def num_sets(self) -> int:
    return self.batch_size if self.packing == "packs" else self.batch_size // self.set_size

  @property
  def curves(self) -> tuple[str, ...]:
    return self.data.curves

  @property
  def state_sharding(self) -> jax.sharding.NamedSharding:
    return members.state_sharding(self)

  def describe(self) -> str:
    if self.packing == "packs":
      batch = f"{self.batch_size} packs of {self.set_size}"
    else:
      batch = f"batch {self.batch_size} in sets of {self.set_size}"
    rule = ", simultaneous updates" if self.update_rule == "simultaneous" else ""
    order = ", sums over devices in mesh order" if self.fixed_order_sums else ""
    return (
      f"Training {type(self.discriminator).__name__} GAN on {self.data.name}: {batch}{rule}, "
      f"{self.mesh.size} device(s){order}"
    )

  def begin(self, work_dir: str) -> None:
    del work_dir
    parallel.warn_if_unsharded(self.num_sets, self.mesh)

  def init_state(self, root: jax.Array) -> "TrainState":
    return init_state(self, root)

  def step(self, state: "TrainState", root: jax.Array, data):
    """One update of every member (the run loop scans or dispatches it)."""
    step = functools.partial(gan_step.train_step, self)
    return members.per_member(self, step)(state, root, data)

  def step_data(self, config, root, data, start: int, end: int):
    return members.step_data(self, config, root, data, start, end)

  def evaluate(self, state: "TrainState", root: jax.Array, data=None):
    return evaluate(self, state, root)

  def sample(self, state: "TrainState", key: jax.Array, num_samples: int) -> np.ndarray:
    """G(z) for `num_samples` z from key's EVAL stream (jgen/run/interface.py)."""
    return np.asarray(jax.device_get(_generate(self, state.g_params, key, num_samples)))

  def picture(self, path: str, samples, title: str, row: dict | None) -> None:
    self.data.picture(path, samples, title, row)

  def progress_text(self, row: dict) -> str:
    if isinstance(row["d_loss"], list):
      text = f"mean d_loss {np.mean(row['d_loss']):.4f} g_loss {np.mean(row['g_loss']):.4f}"
      return text + members.population_modes_text(self, row)
    text = f"d_loss {row['d_loss']:.4f} g_loss {row['g_loss']:.4f}"
    if "diversity" in row:
      text += f" | {self.data.progress_text(row)}"
    return text


run_root = members.run_root


def build(config: ml_collections.ConfigDict) -> tuple[Gan, jax.Array, jax.Array | None]:
  """(the validated Gan, its root key(s), its training set or None for fresh draws)."""
  gan = Gan.from_config(config)
  if config.eval.get("inception_weights"):
    if isinstance(gan.data, datasets.MixtureData):
      raise ValueError("eval.inception_weights is for image data, not 2D mixtures")
    from jgen.evals import inception  # a bad weights file fails here, before any training

    inception.load_inception(config.eval.inception_weights)
  root = run_root(gan, config.seed)
  return gan, root, None if gan.sample_indices is None else training_set(gan, root)


def train_and_evaluate(config: ml_collections.ConfigDict, work_dir: str) -> dict:
  """Trains (resuming from WORKDIR/checkpoints if present); returns the final eval row."""
  gan, root, data = build(config)  # every config error surfaces before anything is written
  return loop.train(gan, config, work_dir, root, data, observers=[recorder.CaseRecorder()])


def training_set(gan: Gan, root: jax.Array):
  """The fixed training set, drawn once from the seed (per member): PacGAN's 100,000 mixture
  points [N, 2]; for stacked digits 128,000 index triples and the 1,797 digits."""

  if gan.packing == "grouped":
    return members.training_set(gan, root)

  def draw(key):
    points = gan.data.training_set(key, gan.num_train)
    return points[gan_step.pack_table(gan, jax.random.fold_in(key, 1))]

  return members.training_set(gan, root, draw)


def init_state(gan: Gan, root: jax.Array) -> TrainState:
  def build():
    init = members.per_member(gan, functools.partial(_init_state, gan))
    return jax.jit(init, out_shardings=gan.state_sharding)

  return interface.compiled(gan, "init_state", build)(root)


def _init_state(gan: Gan, root: jax.Array) -> TrainState:
  g_params = gan.generator.init(
    rng.stream_key(root, rng.Stream.INIT_G), jnp.zeros((1, gan.z_dim), jnp.float32)
  )
  d_params = gan.discriminator.init(
    rng.stream_key(root, rng.Stream.INIT_D),
    jnp.zeros((1, gan.set_size, *gan.data.sample_shape), jnp.float32),
  )
  g_optimized = gan_step.g_trainable(g_params) if gan.g_batch_norm else g_params
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    g_params=g_params,
    d_params=d_params,
    g_opt_state=variants.set_member_hyperparams(gan.variants, gan.g_optimizer.init(g_optimized)),
    d_opt_state=variants.set_member_hyperparams(gan.variants, gan.d_optimizer.init(d_params)),
  )


@functools.partial(jax.jit, static_argnums=(0, 3))
def _generate(gan: Gan, g_params, key: jax.Array, num_samples: int):
  def one(g_params, key):
    # Given the run's root, the same z at every evaluation: curves show G changing, not z noise.
    z = jax.random.normal(rng.stream_key(key, rng.Stream.EVAL), (num_samples, gan.z_dim))
    if gan.g_batch_norm:  # population statistics, never the evaluation batch's own
      stats = gan_step.refreshed_batch_stats(gan, g_params, key)
      return gan.generator.apply({**g_params, "batch_stats": stats}, z, train=False)
    return gan.generator.apply(g_params, z)

  return members.per_member(gan, one)(g_params, key)


def evaluate(gan: Gan, state: TrainState, root: jax.Array) -> tuple[np.ndarray, dict]:
  """`eval.num_samples` samples from a fixed z, and the dataset's evaluation of them.

  For a population, samples are [P, n, ...] and each metric is a list over members.
  """
  samples = gan.sample(state, root, gan.eval_samples)
  return samples, members.evaluate_samples(gan, samples)
