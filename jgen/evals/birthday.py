"""The birthday-paradox test of support size (Arora & Zhang 2017, "Do GANs learn the
distribution?").

If a distribution is uniform on N distinct images, a batch of s samples holds a duplicate with
probability p = 1 - exp(-s(s-1) / 2N), so N ~ s(s-1) / (-2 log(1 - p)). Arora & Zhang judged
near-duplicates by eye; here a pair is a duplicate when its feature distance is below a
threshold, and the threshold is calibrated on real data (callers pass it). The estimate is
therefore relative: compare a generator's support with the real data's under the same threshold.
"""

import math

import numpy as np

from jgen.evals import features


def collision_rate(x_NxF, batch_size: int, num_batches: int, threshold: float, seed: int = 0):
  """Fraction of `num_batches` random batches (without replacement) holding a pair closer
  than `threshold`."""
  x = np.asarray(x_NxF, np.float32)
  if batch_size < 2 or batch_size > len(x):
    raise ValueError(f"batch_size must be in [2, {len(x)}], got {batch_size}")
  rng = np.random.default_rng(seed)
  hits = 0
  for _ in range(num_batches):
    batch = x[rng.choice(len(x), batch_size, replace=False)]
    d2 = features.chunked_squared_distances(batch, batch)
    np.fill_diagonal(d2, np.inf)
    hits += bool(d2.min() < threshold**2)
  return hits / num_batches


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
