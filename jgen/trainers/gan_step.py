"""The GAN's pure functions of (state, root, step): its train state, the D and G update under
either rule, the real and fake batches and how they are grouped into sets or packs.

Everything here is jitted inside the run loop's chunk (jgen/trainers/gan.py builds `gan`, the
frozen spec these functions read); all randomness is `fold_in(root, stream, step)`.

Over several devices with `gan.fixed_order_sums` (config.deterministic), every sum over the
devices goes in mesh order (jgen/core/parallel.py): D's loss, logits and gradients are
per-device means averaged in that order, G's gradient the per-device vjps added in that order,
G's loss likewise; a BatchNorm generator, whose batch statistics couple every sample, runs
whole on every device. Moving samples between devices (sets drawn across the batch) copies and
adds nothing. So 2 processes x 2 devices and 1 process x 4 compute the same bits.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jgen.core import parallel, rng
from jgen.losses import adversarial as losses
from jgen.run import trace
from jgen.trainers.members import draw_real, shard_batch

METRIC_NAMES = ("d_loss", "g_loss", "d_real_logit", "d_fake_logit")


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: also the whole key state of the run
  g_params: Any
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any


def pack_table(gan, key: jax.Array) -> jax.Array:
  """int32 [num_train, set_size]: pack p's slot s is training point table[p, s], every slot
  an independent uniform draw with replacement (PacGAN's GaussianPackingMixture). Drawn once,
  like the training set, so a step's packs follow from the sampler's pack indices."""
  return jax.random.randint(key, (gan.set_size, gan.num_train), 0, gan.num_train).T


def g_trainable(g_params):
  """The part of a BatchNorm generator's variables the optimizer updates."""
  return {"params": g_params["params"]}


def set_order(gan, key: jax.Array) -> jax.Array | None:
  """The keyed random assignment of batch positions to sets (None: one sample per set)."""
  return jax.random.permutation(key, gan.batch_size) if gan.set_size > 1 else None


def to_sets(gan, x_BxD: jax.Array, order: jax.Array | None) -> jax.Array:
  """Groups the batch into sets of `set_size`, in the order `set_order` drew."""
  if order is not None:
    x_BxD = x_BxD[order]
  sets = x_BxD.reshape(gan.num_sets, gan.set_size, *x_BxD.shape[1:])
  return shard_batch(gan, sets)


def generator_forward(gan, g_params, z):
  """(fakes, vjp to the optimized generator variables, new batch statistics or None).

  One generator forward serves both updates (as in the reference DCGAN loop): G's parameters
  do not change between them, so recomputing it would be waste.
  """
  if not gan.g_batch_norm:
    if gan.fixed_order_sums:
      batch_axis = 1 if gan.packing == "packs" else 0  # packs: z is [slot, pack, z_dim]
      fake, generator_vjp = parallel.vjp_per_device(
        gan.generator.apply, gan.mesh, g_params, z, batch_axis
      )
      return fake, generator_vjp, None
    fake, generator_vjp = jax.vjp(lambda g_params: gan.generator.apply(g_params, z), g_params)
    return fake, generator_vjp, None
  whole = functools.partial(parallel.replicate, mesh=gan.mesh) if gan.fixed_order_sums else None

  def forward(trainable):
    fake, updates = gan.generator.apply(
      {**trainable, "batch_stats": g_params["batch_stats"]},
      z if whole is None else whole(z),
      train=True,
      mutable=["batch_stats"],
    )
    # Replicated on the way back too: the constraint's transpose holds G's cotangent whole.
    return fake if whole is None else whole(fake), updates["batch_stats"]

  return jax.vjp(forward, g_trainable(g_params), has_aux=True)


def fakes_to_sets(gan, fake, order):
  """Packs mode: [set_size, packs, D] (one generator pass per slot) -> [packs, set_size, D]."""
  if gan.packing == "packs":
    return shard_batch(gan, jnp.swapaxes(fake, 0, 1))
  return to_sets(gan, fake, order)


def train_step(gan, state: TrainState, root: jax.Array, data):
  """One D update and one G update (`update_rule`); returns (state, metrics of this step)."""
  step = state.step
  seen, real = draw_real(gan, root, data, step)
  real = shard_batch(gan, real)
  if gan.packing == "packs":
    # Slot-major, as PacGAN draws one z batch per slot; real packs come whole from the table.
    z = jax.random.normal(
      rng.step_key(root, rng.Stream.Z, step), (gan.set_size, gan.batch_size, gan.z_dim)
    )
    real_order = fake_order = None
  else:
    z = jax.random.normal(rng.step_key(root, rng.Stream.Z, step), (gan.batch_size, gan.z_dim))
    z = shard_batch(gan, z)
    packing_key = rng.step_key(root, rng.Stream.PACKING, step)
    # Drawn once: the G step regroups its fakes exactly as the D step saw them.
    real_order = set_order(gan, jax.random.fold_in(packing_key, 0))
    fake_order = set_order(gan, jax.random.fold_in(packing_key, 1))
  fake, generator_vjp, batch_stats = generator_forward(gan, state.g_params, z)
  real_sets = real if gan.packing == "packs" else to_sets(gan, real, real_order)
  fake_sets = fakes_to_sets(gan, fake, fake_order)

  def d_objective(d_params, real_sets, fake_sets, alpha):
    both = jnp.concatenate([real_sets, jax.lax.stop_gradient(fake_sets)])
    real_logits, fake_logits = jnp.split(gan.discriminator.apply(d_params, both), 2)
    loss = gan.loss.discriminator(real_logits, fake_logits)
    if gan.loss.uses_gradient_penalty:
      critic = functools.partial(gan.discriminator.apply, d_params)
      loss += gan.gp_weight * losses.gradient_penalty_at(critic, real_sets, fake_sets, alpha)
    return loss, (real_logits.mean(), fake_logits.mean())

  alpha = None
  if gan.loss.uses_gradient_penalty:  # drawn for the whole batch, however it is split
    alpha = losses.penalty_weights(rng.step_key(root, rng.Stream.PENALTY, step), real_sets)
  d_value_and_grad = jax.value_and_grad(d_objective, has_aux=True)
  if gan.fixed_order_sums:
    d_value_and_grad = functools.partial(parallel.mean_over_devices, d_value_and_grad, gan.mesh)
  (d_loss, (d_real, d_fake)), d_grads = d_value_and_grad(
    state.d_params, real_sets, fake_sets, alpha
  )
  d_updates, d_opt_state = gan.d_optimizer.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)
  # Simultaneous (the ALI algorithm PacGAN's code trains with): G's gradient is taken against
  # the same D as D's own, so neither player sees the other's step.
  g_sees = state.d_params if gan.update_rule == "simultaneous" else d_params

  def g_logits(fake_Bx2):
    return gan.discriminator.apply(g_sees, fakes_to_sets(gan, fake_Bx2, fake_order))

  if gan.fixed_order_sums:
    # The loss's gradient per logit is elementwise; only its value is a sum over devices.
    logits, logits_vjp = jax.vjp(g_logits, fake)
    (fake_grad,) = logits_vjp(jax.grad(gan.loss.generator)(logits))
    g_loss = parallel.mean_over_devices(
      lambda _, logits: gan.loss.generator(logits), gan.mesh, (), logits
    )
  else:
    g_loss, fake_grad = jax.value_and_grad(lambda fake: gan.loss.generator(g_logits(fake)))(fake)
  (g_grads,) = generator_vjp(fake_grad)
  if gan.g_batch_norm:
    trainable = g_trainable(state.g_params)
    g_updates, g_opt_state = gan.g_optimizer.update(g_grads, state.g_opt_state, trainable)
    g_params = {**optax.apply_updates(trainable, g_updates), "batch_stats": batch_stats}
  else:
    g_updates, g_opt_state = gan.g_optimizer.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)
  new_state = TrainState(
    step=step + 1,
    g_params=g_params,
    d_params=d_params,
    g_opt_state=g_opt_state,
    d_opt_state=d_opt_state,
  )
  metrics = dict(zip(METRIC_NAMES, (d_loss, g_loss, d_real, d_fake), strict=True))
  if gan.trace:
    metrics["trace"] = trace.trace_row(seen, new_state.g_params, new_state.d_params)
  return new_state, metrics


def refreshed_batch_stats(gan, g_params, root: jax.Array):
  """The population statistics after `bn_refresh_batches` more updates from generator batches
  at the current parameters (fresh z per batch, one batch per pack slot), as PacGAN's
  training-set monitor leaves them before its evaluation. The train state keeps its own."""
  eval_key = rng.stream_key(root, rng.Stream.EVAL)
  z_shape = (gan.set_size if gan.packing == "packs" else 1, gan.batch_size, gan.z_dim)

  def refresh(index, stats):
    z = jax.random.normal(jax.random.fold_in(eval_key, index + 1), z_shape)
    _, updates = gan.generator.apply(
      {"params": g_params["params"], "batch_stats": stats}, z, train=True, mutable=["batch_stats"]
    )
    return updates["batch_stats"]

  return jax.lax.fori_loop(0, gan.bn_refresh_batches, refresh, g_params["batch_stats"])
