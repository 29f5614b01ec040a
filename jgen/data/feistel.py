"""A keyed bijection on [0, N) with O(1) random access: a cycle-walking Feistel network.

`permute(key, i, n)` is position i of a keyed shuffle of [0, n), computed per element, so a
sampler can find any step's indices without materializing (or re-sorting) a permutation of the
whole dataset; recomputing a 100k permutation inside every step cost ~20x the GAN step itself.

This is a pseudo-random permutation (the idea behind Grain's and TensorFlow's
`index_shuffle`): for a fixed key it is an exact bijection, and orders under different keys
look independent, but the keys reach only a tiny subset of the N! permutations, so it is not a
uniform draw over all of them. That is the right trade for sampling order, not for
cryptography or for statistics that need exactly uniform permutations.
"""

import jax
import jax.numpy as jnp

NUM_ROUNDS = 8  # 6 is the usual minimum for a well-mixed balanced Feistel network; 2 spare.
MAX_NUM_EXAMPLES = 2**31


def half_bits(num_examples: int) -> int:
  """h such that 2h is the smallest even bit count with 2**(2h) >= num_examples (h >= 1)."""
  if not 1 <= num_examples <= MAX_NUM_EXAMPLES:
    raise ValueError(f"num_examples must be in [1, 2**31], got {num_examples}")
  h = 1
  while 2 ** (2 * h) < num_examples:
    h += 1
  return h


def _mix32(x: jax.Array) -> jax.Array:
  # murmur3's finalizer: every input bit flips each output bit with probability ~1/2, so the
  # low h bits that the network keeps depend on all bits of (half ^ round_key).
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def _encrypt(x: jax.Array, round_keys: jax.Array, h: int) -> jax.Array:
  mask = jnp.uint32((1 << h) - 1)

  def one_round(halves, round_key):
    left, right = halves
    return (right, left ^ (_mix32(right ^ round_key) & mask)), None

  # A scan traced once and unrolled when lowered: the program of a Python loop over the rounds
  # (integer arithmetic, so the same bits either way) at an eighth of the tracing, which every
  # training step's sampler pays when its run starts.
  rounds_first = jnp.moveaxis(round_keys, -1, 0)
  (left, right), _ = jax.lax.scan(one_round, (x >> h, x & mask), rounds_first, unroll=True)
  return (left << h) | right


def permute(key: jax.Array, index: jax.Array, num_examples: int) -> jax.Array:
  """Position `index` of the keyed pseudo-random permutation of [0, num_examples).

  key: one jax PRNG key (vmap for one key per element); index: int array, values in
  [0, num_examples); num_examples: static, 1 <= num_examples <= 2**31. Returns int32 of
  index's shape. Jittable.
  """
  h = half_bits(num_examples)
  round_keys = jax.random.bits(key, (NUM_ROUNDS,), jnp.uint32)
  n = jnp.uint32(num_examples - 1)  # `<= n - 1` keeps N = 2**31 representable in uint32
  x = _encrypt(jnp.asarray(index).astype(jnp.uint32), round_keys, h)
  if num_examples < 2 ** (2 * h):
    # Cycle walking: the network permutes [0, 4**h); following each element's cycle until it
    # re-enters [0, N) restricts it to a bijection on [0, N). Since 4**h < 4N, a pass lands each
    # straggler in range with probability > 1/4, so a batch needs only a few dozen passes.
    x = jax.lax.while_loop(
      lambda x: jnp.any(x > n),
      lambda x: jnp.where(x > n, _encrypt(x, round_keys, h), x),
      x,
    )
  return x.astype(jnp.int32)
