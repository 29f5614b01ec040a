"""GAN trainer for 2D mixtures and images: per-sample or set discriminators, exact data order.

One jitted `train_step(state, root, data)` holds the D step and the G step;
`train_chunk` scans it over many steps per dispatch. All randomness is
`fold_in(root, stream, step)`, so the state alone (its step counter included)
determines the rest of the run, and a checkpoint needs no key.

The data is a 2D mixture (`gan.mixture`, MLP models, PacGAN's metrics) or an image dataset
(`gan.images`, conv models, jgen/evals/images.py); both are gathered by index on the device
inside the step, so the same update, scan, mesh, resume, trace and populations serve both.
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
from absl import logging
from flax import linen as nn

from jgen import cases, models
from jgen.collapse import trace
from jgen.core import parallel, rng, variants
from jgen.data import image_data, mixtures, samplers, tfds_source
from jgen.evals import diversity, modes
from jgen.losses import adversarial as losses
from jgen.run import checkpoints, loop, workdir
from jgen.viz import plots

METRIC_NAMES = ("d_loss", "g_loss", "d_real_logit", "d_fake_logit")


class NonFiniteError(RuntimeError):
  pass


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: also the whole key state of the run
  g_params: Any
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class Gan:
  """Everything about a run that is fixed: models, optimizers, loss, data order."""

  generator: nn.Module
  discriminator: nn.Module
  g_optimizer: optax.GradientTransformation
  d_optimizer: optax.GradientTransformation
  loss: losses.GanLoss
  gp_weight: float
  mixture: mixtures.Mixture | None  # 2D data, or None for images
  images: image_data.ImageData | None  # image data, or None for a mixture
  sample_indices: Callable[[jax.Array, jax.Array], jax.Array] | None  # None: fresh draws
  num_train: int
  batch_size: int  # global: samples per step, real and fake alike
  set_size: int
  z_dim: int
  eval_samples: int
  eval_config: ml_collections.ConfigDict
  # One dispatch per step instead of a lax.scan: XLA:CPU runs convolutions inside a while loop
  # about 15x slower than the same step alone (measured: 257 vs 18 ms), so image runs on CPU
  # loop in Python. The step itself is the same jitted function either way.
  step_by_step: bool
  trace: bool  # per-step digests for replay (jgen/trace.py); single runs only for now
  population: int  # independent members trained in one program (vmap); 1 = a plain run
  variants: variants.Variants | None  # same-shaped hyper-parameter variants among the members
  mesh: jax.sharding.Mesh

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, mesh=None) -> "Gan":
    """Builds and validates; raises ValueError naming the fix for any bad setting."""
    data = image_data.get_data(config.data)
    images = data if isinstance(data, image_data.IMAGE_TYPES) else None
    mixture = None if images is not None else data
    member_variants = variants.parse(config)
    num_train = config.data.num_train
    if num_train < 1:
      raise ValueError(f"data.num_train must be >= 1, got {num_train}")
    if config.data.fresh_samples:
      if images is not None:
        raise ValueError("data.fresh_samples applies to 2D mixtures only; set it to False")
      if config.sampler.kind != "with_replacement":
        raise ValueError(
          "data.fresh_samples draws i.i.d. points from the mixture every step, which has "
          f"no index order; set sampler.kind=with_replacement (got {config.sampler.kind!r})"
        )
      sample_indices = None
      batch_size = config.train.batch_size
    else:
      batch_size = samplers.global_batch_size(
        config.sampler, num_examples=num_train, batch_size=config.train.batch_size
      )
      sample_indices = variants.make_sampler(config, member_variants, num_examples=num_train)
    if config.population.size < 1:
      raise ValueError(f"population.size must be >= 1, got {config.population.size}")
    set_size = config.model.set_size
    if set_size < 1 or batch_size % set_size:
      raise ValueError(
        f"the batch of {batch_size} samples must split into sets of model.set_size="
        f"{set_size}; choose a set size that divides the batch"
      )
    if getattr(images, "on_host", False) and config.population.size > 1:
      raise ValueError(
        f"{images.name} is read on the host, one batch per step: populations need the data on "
        "the device; raise data.device_bytes_limit if it fits, or set population.size=1"
      )
    if images is None:
      generator = models.make_generator(config.model, data_dim=2)
      discriminator = models.make_discriminator(config.model)
    else:
      generator = models.make_image_generator(config.model, images.sample_shape)
      discriminator = models.make_image_discriminator(config.model)
    return cls(
      generator=generator,
      discriminator=discriminator,
      g_optimizer=variants.make_optimizer(config, member_variants),
      d_optimizer=variants.make_optimizer(config, member_variants),
      loss=losses.get_loss(config.loss.name),
      gp_weight=config.loss.gp_weight,
      mixture=mixture,
      images=images,
      sample_indices=sample_indices,
      num_train=num_train,
      batch_size=batch_size,
      set_size=set_size,
      z_dim=config.model.generator.z_dim,
      eval_samples=config.eval.num_samples,
      eval_config=config.eval,
      step_by_step=images is not None
      and (jax.default_backend() == "cpu" or getattr(images, "on_host", False)),
      trace=config.collapse.trace and config.population.size == 1,
      population=config.population.size,
      variants=member_variants,
      mesh=mesh if mesh is not None else parallel.make_mesh(),
    )

  @property
  def sample_shape(self) -> tuple[int, ...]:
    return (2,) if self.images is None else tuple(self.images.sample_shape)

  @property
  def data_name(self) -> str:
    return (self.mixture or self.images).name

  @property
  def num_modes(self) -> int:
    return (self.mixture or self.images).num_modes

  @property
  def num_sets(self) -> int:
    return self.batch_size // self.set_size

  @property
  def state_sharding(self) -> jax.sharding.NamedSharding:
    """Replicated for a single run; a population is split over devices by member."""
    if self.population == 1:
      return parallel.replicated(self.mesh)
    return parallel.population_sharding(self.mesh, self.population)


def run_root(gan: Gan, seed: int) -> jax.Array:
  """The run's root key; for a population, member i's root is that of its seed.

  Member i's seed is seed + i (with variants: seed + i % seeds_per_variant), so it draws
  exactly the keys (data order, z, init) of a standalone run with that seed; README
  "Populations" says how close their results are.
  """
  if gan.population == 1:
    return rng.root_key(seed)
  return jax.vmap(rng.root_key)(
    jnp.asarray(variants.member_seeds(gan.variants, seed, gan.population))
  )


def build(config: ml_collections.ConfigDict) -> tuple[Gan, jax.Array, jax.Array | None]:
  """(the validated Gan, its root key(s), its training set or None for fresh draws)."""
  gan = Gan.from_config(config)
  if config.eval.get("inception_weights"):
    if gan.images is None:
      raise ValueError("eval.inception_weights is for image data, not 2D mixtures")
    from jgen.evals import inception  # a bad weights file fails here, before any training

    inception.load_inception(config.eval.inception_weights)
  root = run_root(gan, config.seed)
  return gan, root, None if gan.sample_indices is None else training_set(gan, root)


def _per_member(gan: Gan, fn):
  """`fn` for a single run, vmapped over a population's leading axis otherwise."""
  return fn if gan.population == 1 else jax.vmap(fn, axis_name=variants.MEMBER_AXIS)


def training_set(gan: Gan, root: jax.Array):
  """The fixed training set, drawn once from the seed (per member).

  PacGAN's 100,000 mixture points [N, 2]; for images, what `gan.images.gather` reads (for
  stacked digits: 128,000 index triples and the 1,797 digits).
  """

  def draw(root):
    key = rng.stream_key(root, rng.Stream.TRAIN_SET)
    if gan.images is not None:
      return gan.images.training_set(key, gan.num_train)
    return gan.mixture.sample(key, gan.num_train)

  return jax.jit(_per_member(gan, draw), out_shardings=gan.state_sharding)(root)


def init_state(gan: Gan, root: jax.Array) -> TrainState:
  init = _per_member(gan, functools.partial(_init_state, gan))
  return jax.jit(init, out_shardings=gan.state_sharding)(root)


def _init_state(gan: Gan, root: jax.Array) -> TrainState:
  g_params = gan.generator.init(
    rng.stream_key(root, rng.Stream.INIT_G), jnp.zeros((1, gan.z_dim), jnp.float32)
  )
  d_params = gan.discriminator.init(
    rng.stream_key(root, rng.Stream.INIT_D),
    jnp.zeros((1, gan.set_size, *gan.sample_shape), jnp.float32),
  )
  state = TrainState(
    step=jnp.zeros((), jnp.int32),
    g_params=g_params,
    d_params=d_params,
    g_opt_state=variants.set_member_hyperparams(gan.variants, gan.g_optimizer.init(g_params)),
    d_opt_state=variants.set_member_hyperparams(gan.variants, gan.d_optimizer.init(d_params)),
  )
  return state


def _set_order(gan: Gan, key: jax.Array) -> jax.Array | None:
  """The keyed random assignment of batch positions to sets (None: one sample per set)."""
  return jax.random.permutation(key, gan.batch_size) if gan.set_size > 1 else None


def _to_sets(gan: Gan, x_BxD: jax.Array, order: jax.Array | None) -> jax.Array:
  """Groups the batch into sets of `set_size`, in the order `_set_order` drew."""
  if order is not None:
    x_BxD = x_BxD[order]
  sets = x_BxD.reshape(gan.num_sets, gan.set_size, *x_BxD.shape[1:])
  return _shard_batch(gan, sets)


def _shard_batch(gan: Gan, x: jax.Array) -> jax.Array:
  # A population is split over devices by member, so each member's batch stays whole.
  return parallel.shard_leading_axis(x, gan.mesh) if gan.population == 1 else x


def draw_real(gan: Gan, root: jax.Array, data_Nx2: jax.Array, step: jax.Array):
  """(what the step saw: its indices, or its fresh points; the real batch)."""
  if gan.sample_indices is None:
    fresh = gan.mixture.sample(rng.step_key(root, rng.Stream.FRESH_DATA, step), gan.batch_size)
    return fresh, fresh
  indices = gan.sample_indices(root, step)
  if gan.images is not None:
    if _on_host(gan):  # the host read this step's batch by the same indices (HostBatches)
      return indices, tfds_source.to_float(data_Nx2)
    return indices, gan.images.gather(data_Nx2, indices)
  return indices, data_Nx2[indices]


def train_step(gan: Gan, state: TrainState, root: jax.Array, data_Nx2: jax.Array):
  """One D update then one G update; returns (state, metrics of this step)."""
  step = state.step
  seen, real = draw_real(gan, root, data_Nx2, step)
  real = _shard_batch(gan, real)
  z = jax.random.normal(rng.step_key(root, rng.Stream.Z, step), (gan.batch_size, gan.z_dim))
  z = _shard_batch(gan, z)
  packing_key = rng.step_key(root, rng.Stream.PACKING, step)
  # Drawn once: the G step regroups its fakes exactly as the D step saw them.
  real_order = _set_order(gan, jax.random.fold_in(packing_key, 0))
  fake_order = _set_order(gan, jax.random.fold_in(packing_key, 1))
  # One generator forward serves both updates (as in the reference DCGAN loop):
  # G's parameters do not change between them, so recomputing it would be waste.
  fake, generator_vjp = jax.vjp(lambda g_params: gan.generator.apply(g_params, z), state.g_params)
  real_sets, fake_sets = _to_sets(gan, real, real_order), _to_sets(gan, fake, fake_order)

  def d_objective(d_params):
    both = jnp.concatenate([real_sets, jax.lax.stop_gradient(fake_sets)])
    real_logits, fake_logits = jnp.split(gan.discriminator.apply(d_params, both), 2)
    loss = gan.loss.discriminator(real_logits, fake_logits)
    if gan.loss.uses_gradient_penalty:
      critic = functools.partial(gan.discriminator.apply, d_params)
      penalty_key = rng.step_key(root, rng.Stream.PENALTY, step)
      loss += gan.gp_weight * losses.gradient_penalty(critic, real_sets, fake_sets, penalty_key)
    return loss, (real_logits.mean(), fake_logits.mean())

  (d_loss, (d_real, d_fake)), d_grads = jax.value_and_grad(d_objective, has_aux=True)(
    state.d_params
  )
  d_updates, d_opt_state = gan.d_optimizer.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  def g_objective(fake_Bx2):
    return gan.loss.generator(
      gan.discriminator.apply(d_params, _to_sets(gan, fake_Bx2, fake_order))
    )

  g_loss, fake_grad = jax.value_and_grad(g_objective)(fake)
  (g_grads,) = generator_vjp(fake_grad)
  g_updates, g_opt_state = gan.g_optimizer.update(g_grads, state.g_opt_state, state.g_params)
  new_state = TrainState(
    step=step + 1,
    g_params=optax.apply_updates(state.g_params, g_updates),
    d_params=d_params,
    g_opt_state=g_opt_state,
    d_opt_state=d_opt_state,
  )
  metrics = dict(zip(METRIC_NAMES, (d_loss, g_loss, d_real, d_fake), strict=True))
  if gan.trace:
    metrics["trace"] = trace.trace_row(seen, new_state.g_params, new_state.d_params)
  return new_state, metrics


def train_chunk(gan: Gan, state: TrainState, root: jax.Array, data_Nx2: jax.Array, length: int):
  """`length` steps in one dispatch; metrics come back stacked, one entry per step."""

  step = _per_member(gan, functools.partial(train_step, gan))

  def body(state, _):
    return step(state, root, data_Nx2)

  return jax.lax.scan(body, state, length=length)


@functools.cache
def _jitted_chunk(gan: Gan, length: int):
  members = gan.state_sharding
  return jax.jit(
    functools.partial(train_chunk, gan, length=length),
    in_shardings=(members, members, members),
    out_shardings=(members, parallel.replicated(gan.mesh)),
    donate_argnums=0,
  )


def run_chunk(gan: Gan, state: TrainState, root, data_Nx2, length: int):
  if gan.step_by_step:
    return _run_steps(gan, state, root, data_Nx2, length)
  return _jitted_chunk(gan, length)(state, root, data_Nx2)


@functools.cache
def _jitted_step(gan: Gan):
  members = gan.state_sharding
  return jax.jit(
    _per_member(gan, functools.partial(train_step, gan)),
    in_shardings=(members, members, members),
    out_shardings=(members, parallel.replicated(gan.mesh)),
    donate_argnums=0,
  )


def _on_host(gan: Gan) -> bool:
  return getattr(gan.images, "on_host", False)


def _run_steps(gan: Gan, state: TrainState, root, data, length: int):
  """`length` steps, one dispatch each; metrics stacked as `train_chunk` stacks them.

  For data read on the host, `data` is a `tfds_source.HostBatches` and each step gets its
  batch from it (Grain prefetches the next ones meanwhile).
  """
  outputs = []
  for _ in range(length):
    batch = data.next_batch() if _on_host(gan) else data
    state, metrics = _jitted_step(gan)(state, root, batch)
    outputs.append(metrics)
  return state, jax.tree.map(lambda *steps: jnp.stack(steps), *outputs)


@functools.partial(jax.jit, static_argnums=0)
def _eval_on_device(gan: Gan, g_params, root: jax.Array):
  def one(g_params, root):
    # The same z at every evaluation, so curves show G changing, not z noise.
    z = jax.random.normal(rng.stream_key(root, rng.Stream.EVAL), (gan.eval_samples, gan.z_dim))
    samples = gan.generator.apply(g_params, z)
    metrics = modes.mode_metrics(samples, gan.mixture)
    return samples, {**metrics, "diversity": diversity.mean_pairwise_distance(samples)}

  return _per_member(gan, one)(g_params, root)


def evaluate(gan: Gan, state: TrainState, root: jax.Array) -> tuple[np.ndarray, dict]:
  """PacGAN's mode-collapse metrics on `eval.num_samples` generated points (images: the
  stacked-digit modes and classifier-feature metrics, jgen/trainers/image_eval.py).

  For a population, samples are [P, n, 2] and each metric is a list over members.
  """
  if gan.images is not None:
    from jgen.evals import image_eval  # the classifier and image metrics, for images only

    return image_eval.evaluate(gan, state, root)
  samples, metrics = jax.device_get(_eval_on_device(gan, state.g_params, root))
  return np.asarray(samples), modes.to_json_row(metrics)


def first_non_finite(stacked: dict, first_step: int) -> tuple[int, dict] | None:
  """(step, metrics at that step) of the first non-finite metric, or None.

  Metrics are [steps] for a run, [steps, P] for a population (any member counts).
  """
  steps = len(stacked[METRIC_NAMES[0]])
  finite = np.all(
    [np.isfinite(stacked[name]).reshape(steps, -1).all(axis=1) for name in METRIC_NAMES], axis=0
  )
  if finite.all():
    return None
  index = int(np.argmin(finite))
  return first_step + index + 1, {k: np.asarray(stacked[k][index]).tolist() for k in METRIC_NAMES}


@dataclasses.dataclass
class _Run:
  """The pieces of one training session that the host loop drives."""

  gan: Gan
  schedule: loop.Schedule
  root: jax.Array
  data: jax.Array | None
  work_dir: str
  ckpts: checkpoints.Checkpoints
  log: workdir.MetricsLog
  trace_log: trace.TraceLog
  recorder: cases.CaseRecorder


def train_and_evaluate(config: ml_collections.ConfigDict, work_dir: str) -> dict:
  """Trains (resuming from WORKDIR/checkpoints if present); returns the final eval row."""
  gan, root, data = build(config)  # every config error surfaces before anything is written
  schedule = loop.Schedule.from_config(config.train)
  workdir.check_resumable(work_dir, config)
  os.makedirs(os.path.join(work_dir, "samples"), exist_ok=True)
  parallel.warn_if_unsharded(gan.num_sets, gan.mesh)

  state = init_state(gan, root)
  ckpts = checkpoints.Checkpoints(work_dir, keep=config.train.keep_checkpoints)
  try:
    start = ckpts.latest_step() or 0
    if start:
      state = ckpts.restore(start, like=state)
      logging.info("Resumed from the checkpoint at step %d.", start)
    is_chief = jax.process_index() == 0
    if is_chief:
      workdir.write_config(work_dir, config)
    log = workdir.MetricsLog(work_dir, resume_step=start, enabled=is_chief)
    trace_log = trace.TraceLog(work_dir, resume_step=start, enabled=is_chief and gan.trace)
    rows = workdir.read_rows(log.path) if is_chief and os.path.exists(log.path) else []
    recorder = cases.CaseRecorder(
      work_dir, config, ckpts, trace_log, schedule.eval_every, rows, is_chief and gan.trace
    )
    if start == 0:  # a case that fires before the first periodic checkpoint starts here
      ckpts.save(0, state)
      trace_log.append_parts(0, trace.part_digests(state))
    data = step_data(gan, config, root, data, start, schedule.num_steps)
    run = _Run(gan, schedule, root, data, work_dir, ckpts, log, trace_log, recorder)
    try:
      return _train_loop(run, state, start)
    finally:
      log.close()
  finally:
    ckpts.close()


def step_data(gan: Gan, config, root, data, start: int, end: int):
  """What steps (start, end] read: the training set on the device, or for data read on the
  host, a HostBatches that yields exactly those steps' batches."""
  if not _on_host(gan):
    return data
  return tfds_source.HostBatches(
    gan.images, gan.sample_indices, root, gan.batch_size, start, end, config.data.host_workers
  )


def _train_loop(run: _Run, state: TrainState, start: int) -> dict:
  gan, schedule = run.gan, run.schedule
  logging.info(
    "Training %s GAN on %s: %d steps from %d, batch %d in sets of %d, %d device(s).",
    type(gan.discriminator).__name__,
    gan.data_name,
    schedule.num_steps,
    start,
    gan.batch_size,
    gan.set_size,
    gan.mesh.size,
  )
  progress = loop.Progress(start, schedule.num_steps)
  step, pending, last_eval = start, [], None
  while step < schedule.num_steps and not run.recorder.stop_requested:
    length = schedule.chunk_length(step)
    state, chunk_outputs = run_chunk(gan, state, run.root, run.data, length)
    pending.append((step, chunk_outputs))  # fetched only at log steps
    step += length
    if not schedule.should_log(step):
      continue
    window = _fetch_window(run, pending)
    pending = []
    steps_per_sec, eta = progress.tick(step)
    parts = trace.part_digests(state)
    run.trace_log.append_parts(step, parts)
    row = {"step": step, **window, "steps_per_sec": steps_per_sec}
    row["state_digest"] = trace.state_digest(parts)
    if gan.population > 1:
      row["member_digests"] = _member_digests(state)
    if schedule.should_eval(step):
      last_eval = row
      row.update(_evaluate_and_plot(run, state, step))
    run.log.write(row)
    if "modes" in row:
      run.recorder.on_evaluation(_for_detectors(row), schedule.num_steps)
    if schedule.should_checkpoint(step):
      run.ckpts.save(step, state)
    logging.info("%s", _progress_line(row, schedule.num_steps, gan.num_modes, eta))
    progress.restart_window(step)
  if run.recorder.stop_requested:
    logging.warning("Stopped at step %d: collapse.on_trigger=stop.", step)
  if last_eval is None:  # already complete: report the final state without training
    _, eval_row = evaluate(gan, state, run.root)
    last_eval = {
      "step": step,
      **eval_row,
      "state_digest": trace.state_digest(trace.part_digests(state)),
    }
  if jax.process_index() == 0:
    plots.metric_curves(
      os.path.join(run.work_dir, "metrics.png"),
      workdir.read_rows(run.log.path),
      CURVES if gan.images is None else IMAGE_CURVES,
    )
  return last_eval


CURVES = ("modes", "high_quality", "reverse_kl", "diversity", "d_loss", "g_loss")
IMAGE_CURVES = ("modes", "kl", "classifier_fid", "classifier_recall", "d_loss", "g_loss")


def _for_detectors(row: dict) -> dict:
  """Image rows call PacGAN's reverse_kl `kl` (KL to the data's modes); detectors read both."""
  return row if "kl" not in row else {**row, "reverse_kl": row["kl"]}


def _evaluate_and_plot(run: _Run, state: TrainState, step: int) -> dict:
  samples, eval_row = evaluate(run.gan, state, run.root)
  if jax.process_index() == 0:
    title, shown, shown_row = f"step {step}", samples, eval_row
    if run.gan.population > 1:  # the picture shows member 0; the row has every member
      title += f", member 0 of {run.gan.population}"
      shown, shown_row = samples[0], {k: v[0] for k, v in eval_row.items()}
    path = os.path.join(run.work_dir, "samples", f"step_{step:08d}.png")
    save_samples(path, shown, run.gan, title, shown_row)
  return eval_row


def save_samples(path: str, samples, gan: Gan, title: str, metrics: dict | None) -> None:
  """The picture of an evaluation: a scatter plot over a 2D mixture, or a grid of the first
  generated images."""
  if gan.images is not None:
    plots.image_grid(path, samples, title=title, metrics=metrics)
  else:
    plots.scatter_samples(path, samples, gan.mixture, title=title, metrics=metrics)


@jax.jit
def _member_digests_u32(state: TrainState) -> jax.Array:
  return jax.vmap(trace.tree_digest_u32)(state)


def _member_digests(state: TrainState) -> list[str]:
  """A 32-bit device digest per member (sha256 of P states would cost seconds per row)."""
  return [f"{int(d):08x}" for d in jax.device_get(_member_digests_u32(state))]


def _fetch_window(run: _Run, pending) -> dict:
  """Means of the metrics since the last row, and the window's trace rows to disk.

  Stops the run on a non-finite loss, after recording the steps that led to it.
  """
  fetched = jax.device_get([outputs for _, outputs in pending])
  for (first_step, _), outputs in zip(pending, fetched, strict=True):
    bad = first_non_finite(outputs, first_step)
    if "trace" in outputs:
      last = len(outputs["trace"]) if bad is None else bad[0] - first_step
      run.trace_log.append_steps(first_step, outputs["trace"][:last])
    if bad is not None:
      bad_step, values = bad
      case_dir = run.recorder.on_non_finite(bad_step, values)
      recorded = f" The steps leading to it are recorded in {case_dir}." if case_dir else ""
      raise NonFiniteError(
        f"non-finite loss at step {bad_step} ({values}); training stopped. The last good "
        f"checkpoint is step {run.ckpts.latest_step()}: lower the learning rate or change the "
        f"loss, in a new --workdir, or resume from it.{recorded}"
      )
  window = {k: np.concatenate([o[k] for o in fetched]).mean(axis=0) for k in METRIC_NAMES}
  return {k: v.tolist() if v.ndim else float(v) for k, v in window.items()}


def _progress_line(row: dict, num_steps: int, num_modes: int, eta: str) -> str:
  if isinstance(row["d_loss"], list):
    return _population_progress_line(row, num_steps, num_modes, eta)
  text = (
    f"step {row['step']}/{num_steps} ({100 * row['step'] / num_steps:.0f}%) "
    f"{row['steps_per_sec']:.0f} steps/s, ETA {eta} | d_loss {row['d_loss']:.4f} "
    f"g_loss {row['g_loss']:.4f}"
  )
  if "modes" in row and "kl" in row:  # images: modes of 1,000 and KL to the data's modes
    fid = row.get("classifier_fid")
    text += f" | modes {row['modes']}/{num_modes} kl {row['kl']:.4f}"
    text += "" if fid is None else f" classifier_fid {fid:.3f}"
  elif "modes" in row:
    kl = row["reverse_kl"]
    text += (
      f" | modes {row['modes']}/{num_modes} high_quality {row['high_quality']:.3f} "
      f"reverse_kl {'nan' if kl is None else f'{kl:.4f}'}"
    )
  return text


def _population_progress_line(row: dict, num_steps: int, num_modes: int, eta: str) -> str:
  members = len(row["d_loss"])
  text = (
    f"step {row['step']}/{num_steps} ({100 * row['step'] / num_steps:.0f}%) "
    f"{row['steps_per_sec']:.0f} steps/s x {members} members, ETA {eta} | "
    f"mean d_loss {np.mean(row['d_loss']):.4f} g_loss {np.mean(row['g_loss']):.4f}"
  )
  if "modes" in row:
    counts = np.asarray(row["modes"])
    text += (
      f" | modes mean {counts.mean():.2f}/{num_modes} (min {counts.min()}, max {counts.max()}),"
      f" members with all modes {int((counts == num_modes).sum())}/{members}"
    )
  return text
