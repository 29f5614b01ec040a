"""Same-shaped hyper-parameter variants as members of one population.

`config.population.variants` names, per config path, one value per variant:

  --config.population.size=8
  --config.population.variants='optimizer.learning_rate=1e-4|3e-4;sampler.kind=epoch_shuffle|streak'

makes V=2 variants (the columns are zipped, not crossed) of S = size / V seeds each. Member
i runs variant i // S with seed `config.seed + i % S`, so every variant sees the same seeds
(common random numbers: a difference between variants is not a difference of seeds).

Only values that keep every array's shape can vary inside one vmapped program: numeric
optimizer hyper-parameters (through `optax.inject_hyperparams`, which keeps them in the
optimizer state, one value per member) and the sampler (each member's index stream is
chosen by `lax.switch` on its variant; every kind but `full_batch` and `explicit` draws the
same number of indices). The set size changes the shape of the set tensors, and the
optimizer's name the structure of its state: run one population per value instead.

Inside the vmapped step a member learns its variant from `jax.lax.axis_index(MEMBER_AXIS)`,
so the step keeps its signature and a run without variants compiles to the program it would
without this module.
"""

import copy
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jgen.core import optimizers
from jgen.data import samplers

MEMBER_AXIS = "member"  # the vmapped population axis

# Config paths that may vary within a population, and the type of their values.
VARIABLE = {
  "optimizer.learning_rate": float,
  "optimizer.b1": float,
  "optimizer.b2": float,
  "optimizer.momentum": float,
  "sampler.kind": str,
  "sampler.streak_length": int,
  "sampler.streak_scope": str,
  "sampler.streak_dist": str,
  "sampler.streak_base": str,
}


@dataclasses.dataclass(frozen=True)
class Variants:
  """V variants of S seeds each; `columns[path]` holds the V values of one config path."""

  columns: dict[str, tuple]
  seeds_per_variant: int

  @property
  def num_variants(self) -> int:
    return len(next(iter(self.columns.values())))

  @property
  def size(self) -> int:
    return self.num_variants * self.seeds_per_variant

  def variant_of(self, member: int) -> int:
    return member // self.seeds_per_variant

  def seed_offset(self, member: int) -> int:
    return member % self.seeds_per_variant

  def label(self, variant: int) -> str:
    return ",".join(f"{path}={values[variant]}" for path, values in self.columns.items())

  def member_config(self, config: ml_collections.ConfigDict, member: int):
    """The standalone config whose run member `member` reproduces (up to vmap's rounding)."""
    single = copy.deepcopy(config)
    with single.unlocked():
      single.population.size = 1
      single.population.variants = ""
      single.seed = config.seed + self.seed_offset(member)
      for path, values in self.columns.items():
        section, key = path.split(".")
        single[section][key] = values[self.variant_of(member)]
    return single


def parse(config: ml_collections.ConfigDict) -> Variants | None:
  """The variants of `config.population`, or None; raises ValueError naming the fix."""
  text = config.population.get("variants", "")
  if not text:
    return None
  columns = {}
  for item in filter(None, (part.strip() for part in text.split(";"))):
    path, sep, values = item.partition("=")
    path = path.strip().removeprefix("config.")
    if not sep or not values:
      raise ValueError(
        f"population.variants: {item!r} is not 'path=v1|v2|...'; e.g. "
        "'optimizer.learning_rate=1e-4|3e-4;sampler.kind=epoch_shuffle|streak'"
      )
    if path not in VARIABLE:
      raise ValueError(
        f"population.variants: {path!r} cannot vary within one population; valid paths: "
        f"{', '.join(VARIABLE)} (other settings change array shapes: run one population each)"
      )
    try:
      columns[path] = tuple(VARIABLE[path](v.strip()) for v in values.split("|"))
    except ValueError:
      raise ValueError(
        f"population.variants: {path} takes {VARIABLE[path].__name__} values, got {values!r}"
      ) from None
  lengths = {path: len(values) for path, values in columns.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(
      f"population.variants: every path needs the same number of values (one per variant), "
      f"got {lengths}"
    )
  num_variants = next(iter(lengths.values()))
  if config.population.size < 2:
    raise ValueError(
      "population.variants needs a population (population.size >= 2); for one variant, set "
      "its values directly, e.g. --config.optimizer.learning_rate=3e-4"
    )
  if config.population.size % num_variants:
    raise ValueError(
      f"population.size={config.population.size} must be a multiple of the {num_variants} "
      "variants (each variant runs size / variants seeds)"
    )
  varied_optimizer = [path.split(".")[1] for path in columns if path.startswith("optimizer.")]
  accepted = optimizers.hyperparameter_names(config.optimizer.name)
  for name in varied_optimizer:
    if name not in accepted:
      raise ValueError(
        f"population.variants: optimizer.{name} is not a hyper-parameter of "
        f"optimizer.name={config.optimizer.name!r} (it takes {', '.join(accepted)})"
      )
  return Variants(columns, config.population.size // num_variants)


def member_seeds(variants: Variants | None, seed: int, population: int) -> np.ndarray:
  """Each member's seed: seed + i without variants, seed + i % S with them."""
  members = np.arange(population)
  return seed + (members if variants is None else members % variants.seeds_per_variant)


def _variant_index(variants: Variants) -> jax.Array:
  """This member's variant, inside the population's vmap."""
  table = jnp.asarray([variants.variant_of(i) for i in range(variants.size)], jnp.int32)
  return table[jax.lax.axis_index(MEMBER_AXIS)]


def make_optimizer(config: ml_collections.ConfigDict, variants: Variants | None):
  """optax by name; with varied hyper-parameters, their values live in the optimizer state."""
  if variants is None or not any(path.startswith("optimizer.") for path in variants.columns):
    return optimizers.make_optimizer(config.optimizer)
  for path, values in variants.columns.items():
    if path == "optimizer.learning_rate" and min(values) <= 0:
      raise ValueError(f"population.variants: learning rates must be > 0, got {values}")
  return optimizers.make_optimizer(config.optimizer, inject=True)


def set_member_hyperparams(variants: Variants | None, opt_state):
  """Writes this member's values into an inject_hyperparams state (inside the vmap). A
  learning-rate decay chains the optimizer first (optimizers.with_lr_decay): its state is a
  tuple whose first element holds the hyper-parameters."""
  varied = {} if variants is None else variants.columns
  names = {path.split(".")[1]: values for path, values in varied.items() if "optimizer." in path}
  if not names:
    return opt_state
  if not hasattr(opt_state, "hyperparams"):
    return (set_member_hyperparams(variants, opt_state[0]), *opt_state[1:])
  index = _variant_index(variants)
  hyperparams = dict(opt_state.hyperparams)
  for name, values in names.items():
    value = jnp.asarray(values, jnp.float32)[index]
    hyperparams[name] = value.astype(hyperparams[name].dtype)
  return opt_state._replace(hyperparams=hyperparams)


def make_sampler(
  config: ml_collections.ConfigDict, variants: Variants | None, *, num_examples: int
) -> samplers.Sampler:
  """The data order; with varied sampler settings, each member follows its variant's."""
  build = lambda sampler_config: samplers.make_sampler(
    sampler_config,
    num_examples=num_examples,
    batch_size=config.train.batch_size,
    num_steps=config.train.num_steps,
  )
  sampler_paths = [] if variants is None else [p for p in variants.columns if "sampler." in p]
  if not sampler_paths:
    return build(config.sampler)
  variant_configs = []
  for v in range(variants.num_variants):
    sampler_config = copy.deepcopy(config.sampler)
    for path in sampler_paths:
      sampler_config[path.split(".")[1]] = variants.columns[path][v]
    variant_configs.append(sampler_config)
  for sampler_config in variant_configs:
    if sampler_config.kind in ("full_batch", "explicit"):
      raise ValueError(
        f"population.variants: sampler.kind={sampler_config.kind!r} cannot be a variant "
        "(its batch shape or stream is its own); run it as its own population"
      )
  branches = [build(sampler_config) for sampler_config in variant_configs]

  def sample(root_key, step):
    return jax.lax.switch(_variant_index(variants), branches, root_key, step)

  return sample
