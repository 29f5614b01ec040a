"""Samplers: the order in which training examples are drawn, as a pure function of the step.

`make_sampler(config.sampler, ...)` returns `sample(root_key, step) -> int32[global_batch]`.
Any step can be computed on its own (no state, no replay of earlier steps), under jit, with a
traced step, on the device; the values do not depend on how many devices the batch is sharded
over. `python -m jgen.indices` prints the stream.

Kinds (config.sampler.kind):
  epoch_shuffle     a fresh pseudo-random permutation of [0, N) per epoch; position
                    p = step * B + slot, epoch = p // N, so batches straddle epochs when B does
                    not divide N (and B > N is fine).
  shuffle_once      the same, with epoch 0's permutation reused every epoch.
  with_replacement  i.i.d. uniform draws.
  full_batch        every example every step (global batch = N).
  streak            each draw of `streak_base` is repeated over a streak of consecutive steps:
                    index(s, j) = base(t, j), t <= s the step at which slot j's streak began.
  explicit          rows of an int [steps, B] .npy at `path` (e.g. a recorded stream).

Every element is a function of (step, slot) alone, so a streak can evaluate its base at a
different step for each slot, and per-element work is O(1) in N.
"""

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jgen.core import registry, rng
from jgen.core.rng import Stream
from jgen.data import feistel

Sampler = Callable[[jax.Array, jax.Array], jax.Array]
# (root_key, steps uint32[B], slots uint32[B]) -> int32[B]: base(steps[j], slots[j]) per j.
ElementFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]

MAX_NUM_EXAMPLES = 2**31 - 1  # indices are int32


def global_batch_size(sampler_config, *, num_examples: int, batch_size: int) -> int:
  """Examples per step: num_examples for kind 'full_batch', else batch_size."""
  return num_examples if sampler_config.kind == "full_batch" else batch_size


def make_sampler(
  sampler_config, *, num_examples: int, batch_size: int, num_steps: int | None = None
) -> Sampler:
  """Validates `sampler_config` and returns `sample(root_key, step) -> int32[global_batch]`.

  root_key: the run's root key (jgen.core.rng.root_key(seed)); the sampler derives its streams
  (Stream.DATA_INDICES, Stream.STREAK) from it. step: int or traced int32 scalar, >= 0.
  num_steps: the steps the run will take, so that an explicit stream that is too short fails
  here. Raises ValueError naming the fix for impossible settings.
  """
  _check_int("num_examples (config.data.num_train)", num_examples, 1, MAX_NUM_EXAMPLES)
  _check_int("batch_size (config.train.batch_size)", batch_size, 1, MAX_NUM_EXAMPLES)
  if num_steps is not None:
    _check_int("num_steps", num_steps, 0, 2**31 - 1)
  build = registry.choose("sampler.kind", sampler_config.kind, _KINDS)
  if sampler_config.kind != "explicit" and sampler_config.path:
    raise ValueError(
      f"sampler.path={sampler_config.path!r} is only read by sampler.kind='explicit', but "
      f"sampler.kind={sampler_config.kind!r}; set --config.sampler.kind=explicit or clear "
      "sampler.path"
    )
  return build(sampler_config, num_examples, batch_size, num_steps)


def _check_int(what: str, value, low: int, high: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
    raise ValueError(f"{what} must be an integer in [{low}, {high}], got {value!r}")


def _steps_and_slots(step, batch_size: int) -> tuple[jax.Array, jax.Array]:
  steps = jnp.broadcast_to(jnp.asarray(step).astype(jnp.uint32), (batch_size,))
  return steps, jnp.arange(batch_size, dtype=jnp.uint32)


def _from_elements(element: ElementFn, batch_size: int) -> Sampler:
  def sample(root_key, step):
    return element(root_key, *_steps_and_slots(step, batch_size))

  return sample


# --- epoch_shuffle, shuffle_once ---------------------------------------------------------------


def _epoch_and_position(steps, slots, n: int, b: int) -> tuple[jax.Array, jax.Array]:
  """(p // n, p % n) for p = steps * b + slots, exact although p can pass 2**32.

  x64 is off, so p is never formed: with steps = u * n + v, p = u*b*n + v*b + slot, and v*b is
  divided by n by binary long multiplication over the bits of b (static), keeping every
  intermediate below 2n <= 2**32.
  """
  n_u32 = jnp.uint32(n)
  u, v = steps // n_u32, steps % n_u32
  quotient = jnp.zeros_like(steps)
  remainder = jnp.zeros_like(steps)

  def reduce(q, r):
    over = r >= n_u32
    return q + over.astype(jnp.uint32), jnp.where(over, r - n_u32, r)

  for bit in bin(b)[2:]:
    quotient, remainder = reduce(2 * quotient, 2 * remainder)
    if bit == "1":
      quotient, remainder = reduce(quotient, remainder + v)
  # Epochs wrap modulo 2**32 only after 2**32 epochs; that only reuses permutation keys.
  epoch = u * jnp.uint32(b) + quotient
  position = remainder + slots  # < n + b <= 2**32
  return epoch + position // n_u32, position % n_u32


def _permutation_key(root_key, epoch):
  return rng.step_key(root_key, Stream.DATA_INDICES, epoch)


def _permuted_element(n: int, b: int, *, reshuffle: bool) -> ElementFn:
  def element(root_key, steps, slots):
    epochs, positions = _epoch_and_position(steps, slots, n, b)
    if not reshuffle:
      return feistel.permute(_permutation_key(root_key, 0), positions, n)
    # One key per element: a batch (or a streak's slots) can span several epochs.
    keys = jax.vmap(_permutation_key, in_axes=(None, 0))(root_key, epochs)
    return jax.vmap(feistel.permute, in_axes=(0, 0, None))(keys, positions, n)

  return element


# --- with_replacement ----------------------------------------------------------------------------


def _with_replacement_element(n: int) -> ElementFn:
  # One key per (step, slot) rather than one draw of shape [B] per step, so that a slot's
  # value can be computed alone: a streak evaluates its base at a different step per slot.
  def draw(root_key, step, slot):
    key = jax.random.fold_in(rng.step_key(root_key, Stream.DATA_INDICES, step), slot)
    return jax.random.randint(key, (), 0, n, jnp.int32)

  return jax.vmap(draw, in_axes=(None, 0, 0))


# --- streak --------------------------------------------------------------------------------------

_STREAK_BASES = {
  "epoch_shuffle": lambda n, b: _permuted_element(n, b, reshuffle=True),
  "with_replacement": lambda n, b: _with_replacement_element(n),
}
_STREAK_SCOPES = ("slot", "batch")
_STREAK_DISTS = ("fixed", "geometric")

# (root_key, step uint32 scalar, slots uint32[B]) -> uint32[B] (or [1], shared by the batch):
# the step of each slot's last renewal <= step.
RenewalFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def _fixed_renewal(length: int, scope: str) -> RenewalFn:
  def last_renewal(root_key, step, slots):
    del root_key
    if scope == "batch":
      return jnp.broadcast_to(step - step % jnp.uint32(length), slots.shape)
    # Slot j renews when (t + j) % L == 0: phases are staggered so ~B/L slots renew per step
    # instead of the whole batch at once. Step 0 renews every slot; its streaks run short.
    offset = (step + slots) % jnp.uint32(length)
    return jnp.where(step >= offset, step - offset, jnp.uint32(0))

  return last_renewal


def _geometric_renewal(length: int, scope: str) -> RenewalFn:
  probability = 1.0 / length

  def renews(root_key, t, slot):
    key = rng.step_key(root_key, Stream.STREAK, t)
    if scope == "slot":
      key = jax.random.fold_in(key, slot)
    return (t == 0) | jax.random.bernoulli(key, probability)

  def last_renewal(root_key, step, slots):
    # Renewals are i.i.d. per (step, slot), so the streak's start is found by searching back
    # from `step`; the search takes ~L * log(B) iterations and always stops at t = 0.
    if scope == "batch":
      slots = slots[:1]
    check = jax.vmap(renews, in_axes=(None, 0, 0))
    t = jnp.broadcast_to(step, slots.shape)

    def body(state):
      t, done = state
      t = jnp.where(done, t, t - 1)
      return t, done | check(root_key, t, slots)

    t, _ = jax.lax.while_loop(lambda s: ~jnp.all(s[1]), body, (t, check(root_key, t, slots)))
    return t  # [1] for batch scope: broadcast by the caller

  return last_renewal


def _streak(config, n: int, b: int, num_steps) -> Sampler:
  del num_steps
  length = config.streak_length
  if isinstance(length, bool) or not isinstance(length, int) or length < 1:
    raise ValueError(
      f"sampler.streak_length must be an integer >= 1 (1 repeats nothing: the stream equals "
      f"sampler.streak_base), got {length!r}"
    )
  registry.choose("sampler.streak_scope", config.streak_scope, dict.fromkeys(_STREAK_SCOPES))
  registry.choose("sampler.streak_dist", config.streak_dist, dict.fromkeys(_STREAK_DISTS))
  base = registry.choose("sampler.streak_base", config.streak_base, _STREAK_BASES)(n, b)
  make_renewal = _fixed_renewal if config.streak_dist == "fixed" else _geometric_renewal
  last_renewal = make_renewal(length, config.streak_scope)

  def sample(root_key, step):
    steps, slots = _steps_and_slots(step, b)
    starts = jnp.broadcast_to(last_renewal(root_key, steps[0], slots), (b,))
    return base(root_key, starts, slots)

  return sample


# --- explicit ------------------------------------------------------------------------------------


def _explicit(config, n: int, b: int, num_steps) -> Sampler:
  path = config.path
  if not path:
    raise ValueError(
      "sampler.kind='explicit' reads its stream from sampler.path, which is empty; set "
      "--config.sampler.path=/path/to/stream.npy (an integer array of shape [steps, batch])"
    )
  if not os.path.isfile(path):
    raise ValueError(f"explicit sampler stream {path!r} does not exist (sampler.path)")
  try:
    stream = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as error:
    raise ValueError(f"explicit sampler stream {path!r} is not a readable .npy: {error}") from None
  problem = None
  if stream.ndim != 2:
    problem = f"has shape {stream.shape}; it must be 2-D [steps, batch_size={b}]"
  elif stream.shape[1] != b:
    problem = f"has {stream.shape[1]} indices per row; config.train.batch_size is {b}"
  elif not np.issubdtype(stream.dtype, np.integer):
    problem = f"has dtype {stream.dtype}; it must hold integer indices"
  elif stream.shape[0] == 0:
    problem = "has no rows"
  elif stream.min() < 0 or stream.max() >= n:
    problem = (
      f"holds indices in [{stream.min()}, {stream.max()}], outside [0, {n}) (config.data.num_train)"
    )
  elif num_steps is not None and stream.shape[0] < num_steps:
    problem = f"has {stream.shape[0]} rows (steps), fewer than the {num_steps} steps to run"
  if problem:
    raise ValueError(f"explicit sampler stream {path!r} {problem}")
  stream = jnp.asarray(stream, jnp.int32)
  num_rows = stream.shape[0]

  def sample(root_key, step):
    del root_key
    # Without num_steps nothing bounds the step; past the last row the stream repeats.
    return stream[jnp.asarray(step).astype(jnp.uint32) % jnp.uint32(num_rows)]

  return sample


_KINDS = {
  "epoch_shuffle": lambda c, n, b, s: _from_elements(_permuted_element(n, b, reshuffle=True), b),
  "shuffle_once": lambda c, n, b, s: _from_elements(_permuted_element(n, b, reshuffle=False), b),
  "with_replacement": lambda c, n, b, s: _from_elements(_with_replacement_element(n), b),
  "full_batch": lambda c, n, b, s: lambda root_key, step: jnp.arange(n, dtype=jnp.int32),
  "streak": _streak,
  "explicit": _explicit,
}


def index_stream(config, from_step: int, num_steps: int, chunk_steps: int = 1024):
  """Yields (step, int32[global_batch] numpy row) for steps [from_step, from_step + num_steps):
  the indices a run of `config` draws (root key from config.seed, N = config.data.num_train,
  B = config.train.batch_size). Raises ValueError, before the first row, for settings that
  have no stream. `chunk_steps` steps are computed per dispatch: one compiled shape for any
  num_steps, and few dispatches for 10k steps.
  """
  if config.data.get("fresh_samples", False):
    raise ValueError(
      "config.data.fresh_samples=True draws new data every step, so there is no index "
      "stream to print; set --config.data.fresh_samples=False"
    )
  if from_step < 0 or num_steps < 0:
    raise ValueError(f"steps must be >= 0; got --from_step={from_step} --num_steps={num_steps}")
  if from_step + num_steps > 2**31 - 1:
    raise ValueError(
      f"steps must stay below 2**31; got --from_step={from_step} --num_steps={num_steps}"
    )
  sample = make_sampler(
    config.sampler,
    num_examples=config.data.num_train,
    batch_size=config.train.batch_size,
    num_steps=from_step + num_steps,
  )
  root_key = rng.root_key(config.seed)
  sample_steps = jax.jit(jax.vmap(sample, in_axes=(None, 0)))
  chunk = min(chunk_steps, max(num_steps, 1))
  for start in range(from_step, from_step + num_steps, chunk):
    stop = min(start + chunk, from_step + num_steps)
    # Pad the last chunk with repeats of its last step so that it reuses the compiled shape.
    steps = np.minimum(np.arange(start, start + chunk), stop - 1).astype(np.int32)
    rows = np.asarray(sample_steps(root_key, jnp.asarray(steps)))
    yield from zip(range(start, stop), rows[: stop - start], strict=True)
