"""The birthday-paradox test of support size (Arora & Zhang 2017, "Do GANs learn the
distribution?").

If a distribution is uniform on N distinct images, a batch of s samples holds a duplicate with
probability p = 1 - exp(-s(s-1) / 2N), so N ~ s(s-1) / (-2 log(1 - p)). Arora & Zhang judged
near-duplicates by eye; here a pair is a duplicate when its feature distance is below a
threshold, and the threshold is calibrated on real data (callers pass it). The estimate is
therefore relative: compare a generator's support with the real data's under the same threshold.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jgen.evals import features


def collision_rate(x_NxF, batch_size: int, num_batches: int, threshold: float, seed: int = 0):
  """Fraction of `num_batches` random batches (without replacement) holding a pair closer
  than `threshold`."""
  x = np.asarray(x_NxF, np.float32)
  if batch_size < 2 or batch_size > len(x):
    raise ValueError(f"batch_size must be in [2, {len(x)}], got {batch_size}")
  rng = np.random.default_rng(seed)
  picks = np.stack([rng.choice(len(x), batch_size, replace=False) for _ in range(num_batches)])
  closest = np.asarray(_closest_squared_distance_per_batch(jnp.asarray(x), jnp.asarray(picks)))
  return int(np.sum(closest < threshold**2)) / num_batches


@jax.jit
def _closest_squared_distance_per_batch(x_NxF, picks_BxS):
  """Each batch's smallest squared distance between two of its samples: every batch in one
  program (one dispatch, not one per batch), each computed as features.chunked_squared_distances
  computes a batch of up to its chunk (one matmul)."""

  def closest(indices_S):
    batch = x_NxF[indices_S]
    d2 = features.squared_distances(batch, batch)
    return jnp.where(jnp.eye(len(indices_S), dtype=bool), jnp.inf, d2).min()

  return jax.lax.map(closest, picks_BxS)


def support_size(rate: float, batch_size: int, num_batches: int) -> float:
  """N such that a batch of `batch_size` holds a duplicate with probability `rate`.

  A rate of 0 gives inf (no duplicate seen: the support is too large for this batch size);
  a rate of 1 is read as 1 - 1/(2 num_batches), so the estimate stays finite (an upper bound).
  """
  if rate <= 0:
    return math.inf
  rate = min(rate, 1 - 1 / (2 * num_batches))
  return batch_size * (batch_size - 1) / (-2 * math.log(1 - rate))


def nearest_neighbour_distances(x_NxF) -> np.ndarray:
  d2 = features.chunked_squared_distances(x_NxF, x_NxF)
  np.fill_diagonal(d2, np.inf)
  return np.sqrt(d2.min(axis=1))
