"""Data parallelism as jit over a device mesh, sums over devices in a fixed order, and GPU
determinism flags.

The batch is sharded along the mesh's `data` axis; parameters and optimizer
states are replicated. Left to itself, XLA inserts the gradient all-reduce, and
the all-reduce adds the devices' partial sums in whatever order its
implementation chooses: in one process in device order, through gloo (several
processes) in ring order. Float addition is not associative, so 2 processes x 2
devices then drift away from 1 process x 4. With `config.deterministic`, the
trainers instead sum over devices with `mean_over_devices` and
`vjp_per_device`: each device's partial result is gathered to every device
(an all-gather copies, it adds nothing) and added in mesh order there, so
every topology adds the same numbers in the same order.

We do not use `pmap`: with 8 fake CPU devices it aborted in its all-reduce in
about 1 run in 17 here, while the mesh path did not.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
GPU_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"


def enable_gpu_determinism() -> None:
  """Asks XLA for run-to-run reproducible GPU kernels (must precede backend start).

  Costs throughput on GPU (no atomics-based reductions or autotuned
  nondeterministic kernels); CPU and TPU ignore the flag. See README.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if GPU_DETERMINISM_FLAG not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {GPU_DETERMINISM_FLAG}".strip()


HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"
# Set by split_cpu_into_cores: the CPU devices beyond the first of each process are jgen's, made
# for populations, and a single run does not use them.
CPU_SPLIT_ENV = "JGEN_CPU_SPLIT"


def split_cpu_into_cores() -> None:
  """Gives XLA one CPU device per core (before the backend starts), unless XLA_FLAGS already
  says how many: XLA:CPU runs a vmapped population's many small matmuls on one thread, and a
  population split over devices runs on all cores (docs/decisions.md, "Populations on CPU").

  Accelerators are unaffected (the flag makes host devices only). A single run keeps one device
  per process (`make_mesh`), so its results do not depend on the machine's cores."""
  flags = os.environ.get("XLA_FLAGS", "")
  if HOST_DEVICES_FLAG in flags:
    return
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  if not cores or cores < 2:
    return
  os.environ["XLA_FLAGS"] = f"{flags} {HOST_DEVICES_FLAG}={cores}".strip()
  os.environ[CPU_SPLIT_ENV] = str(cores)


def _jgen_split() -> str | None:
  """The device-count flag split_cpu_into_cores added, if XLA_FLAGS still holds it. A process
  can inherit the marker with XLA_FLAGS that someone replaced since (a test's subprocess with
  8 fake devices): those devices are the user's, and a single run uses them all."""
  split = os.environ.get(CPU_SPLIT_ENV)
  flag = f"{HOST_DEVICES_FLAG}={split}"
  return flag if split and flag in os.environ.get("XLA_FLAGS", "").split() else None


def user_xla_flags() -> str:
  """XLA_FLAGS as the user set them: without the device count split_cpu_into_cores added."""
  flags, added = os.environ.get("XLA_FLAGS", ""), _jgen_split()
  return " ".join(f for f in flags.split() if f != added) if added else flags


def _first_device_per_process(devices) -> list:
  seen, first = set(), []
  for device in devices:
    if device.process_index not in seen:
      seen.add(device.process_index)
      first.append(device)
  return first


def population_devices(population: int, wanted: int = 0, devices=None) -> list:
  """The devices a run uses. A single run: every device, except CPU devices that jgen split off
  for populations (one per process then). A population: `wanted` devices (0: as many as there
  are), fewer if the members do not split evenly over them, since each device holds whole
  members. Raises ValueError for a `wanted` the machine cannot give."""
  devices = list(devices if devices is not None else jax.devices())
  split_by_jgen = _jgen_split() is not None and devices[0].platform == "cpu"
  if population == 1:
    return _first_device_per_process(devices) if split_by_jgen else devices
  if wanted < 0 or wanted > len(devices):
    raise ValueError(
      f"population.devices={wanted} asks for more devices than the {len(devices)} here (or a "
      "negative count); use 0 for all of them, or a number from 1 to "
      f"{len(devices)}. On CPU, XLA_FLAGS={HOST_DEVICES_FLAG}=N makes N devices"
    )
  count = wanted or len(devices)
  while population % count:
    count -= 1
  return devices[:count]


def make_mesh(devices=None, population: int = 1, wanted: int = 0) -> Mesh:
  """A 1-D mesh over `devices` (default: `population_devices(population, wanted)`)."""
  if devices is None:
    devices = population_devices(population, wanted)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def replicate(x: jax.Array, mesh: Mesh) -> jax.Array:
  """Every device holds (and computes) all of `x`."""
  return jax.lax.with_sharding_constraint(x, replicated(mesh))


def shard_leading_axis(x: jax.Array, mesh: Mesh) -> jax.Array:
  """Shards axis 0 over `data` when it divides evenly; otherwise leaves XLA to choose.

  Uneven splits are refused by NamedSharding, and a warning at start-up
  (`warn_if_unsharded`) tells the user the batch runs replicated.
  """
  if mesh.size == 1 or x.shape[0] % mesh.size:
    return x
  spec = PartitionSpec(DATA_AXIS, *([None] * (x.ndim - 1)))
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def warn_if_unsharded(num_sets: int, mesh: Mesh) -> None:
  if mesh.size > 1 and num_sets % mesh.size:
    logging.warning(
      "%d discriminator inputs per step do not split over %d devices; the batch runs "
      "replicated (correct, but no data-parallel speed-up). Pick a batch size whose "
      "number of sets is a multiple of the device count.",
      num_sets,
      mesh.size,
    )


def population_sharding(mesh: Mesh, population: int) -> NamedSharding:
  """Members split over the `data` axis when they divide evenly, else replicated."""
  if mesh.size > 1 and population % mesh.size == 0:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))
  return replicated(mesh)


def sums_in_fixed_order(deterministic: bool, mesh: Mesh, batch: int, population: int) -> bool:
  """Whether a step sums over devices in mesh order: asked for, and there is something to sum.

  One device adds nothing across devices (and keeps its results as they were); a population
  is split by member, so its step has no sum over devices; a batch that does not split over
  the devices runs replicated (`warn_if_unsharded`), every device computing all of it.
  """
  return deterministic and population == 1 and mesh.size > 1 and batch % mesh.size == 0


def sum_in_mesh_order(tree):
  """Inside shard_map over `data`: the sum over devices of each device's `tree`, added in mesh
  order ((d0 + d1) + d2) + ... on every device, after one all-gather of the flattened tree.

  `jax.lax.psum` would leave the order to the collective (gloo's ring adds in another order
  than one process's all-reduce). Each device receives the other K - 1 partial results, where
  a ring all-reduce receives about two; docs/robustness.md ("Speed") measures the cost.
  """
  flat, unravel = ravel_pytree(tree)
  gathered = jax.lax.all_gather(flat, DATA_AXIS, to="invarying")
  total = gathered[0]
  for k in range(1, gathered.shape[0]):  # unrolled: XLA keeps this order (no reassociation)
    total = total + gathered[k]
  return unravel(total)


def mean_over_devices(fn, mesh: Mesh, replicated, *batches):
  """fn(replicated, *slices) on each device's slice of `batches` (split along axis 0), every
  output averaged over the devices in mesh order.

  With equal slices, the mean over devices of per-slice means is the mean over the batch: for
  a loss that averages per-example terms, the loss and its gradient on the whole batch. `fn`
  may take gradients with respect to `replicated`: each device differentiates its own copy, so
  no hidden all-reduce adds the devices' gradients.
  """

  def local(replicated, *slices):
    own = jax.tree.map(lambda x: jax.lax.pcast(x, DATA_AXIS, to="varying"), replicated)
    return jax.tree.map(lambda x: x / mesh.size, sum_in_mesh_order(fn(own, *slices)))

  split = PartitionSpec(DATA_AXIS)
  return jax.shard_map(
    local, mesh=mesh, in_specs=(PartitionSpec(), *[split] * len(batches)), out_specs=PartitionSpec()
  )(replicated, *batches)


def vjp_per_device(fn, mesh: Mesh, params, batch: jax.Array, batch_axis: int = 0):
  """(fn(params, batch) computed slice by slice, its vjp): as `jax.vjp(fn, params, ...)`, but
  the cotangent of `params` is the devices' own cotangents added in mesh order.

  The vjp of a shard_map whose `params` are replicated would psum their cotangent; instead every
  device differentiates its own copy (a [K, ...] array split over `data`, made without
  communication) and the copies' cotangents are summed by `sum_in_mesh_order`. `fn` must treat
  the samples along `batch_axis` independently.
  """
  split = PartitionSpec(DATA_AXIS)
  sliced = PartitionSpec(*[None] * batch_axis, DATA_AXIS)

  def copy(p):
    copies = jnp.broadcast_to(p, (mesh.size, *p.shape))
    return jax.lax.with_sharding_constraint(copies, NamedSharding(mesh, split))

  def local(copies, batch):
    return fn(jax.tree.map(lambda c: c[0], copies), batch)

  def add_copies(copies):
    return sum_in_mesh_order(jax.tree.map(lambda c: c[0], copies))

  per_device = jax.shard_map(local, mesh=mesh, in_specs=(split, sliced), out_specs=sliced)
  add = jax.shard_map(add_copies, mesh=mesh, in_specs=split, out_specs=PartitionSpec())
  out, copies_vjp = jax.vjp(lambda copies: per_device(copies, batch), jax.tree.map(copy, params))
  return out, lambda cotangent: (add(copies_vjp(cotangent)[0]),)
