"""A distance between distributions that moves continuously where a mode count jumps: the sliced
1-Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015).

  sliced_w1(x, y) = mean over unit directions t of W1(<x, t>, <y, t>)

where W1 of two 1D samples is the mean absolute difference of their quantiles. In 2D the
directions are `num_directions` angles evenly spaced over [0, pi), so the value is a fixed
function of the two samples (no key). Two independent samples of one distribution are not at
0: `noise_floor` measures how far apart they lie at a given n.
"""

import numpy as np

NUM_DIRECTIONS = 180  # one per degree


def _directions(dim: int, count: int) -> np.ndarray:
  if dim != 2:
    raise ValueError(f"sliced_w1 spaces its directions evenly in 2D; got {dim}-dimensional points")
  angles = np.pi * np.arange(count) / count
  return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _quantiles(values_NxD: np.ndarray, count: int) -> np.ndarray:
  """The sorted values at `count` evenly spaced quantile levels (the order statistics when
  count equals N), per column: np.quantile's inverted_cdf, the smallest value whose empirical
  CDF reaches the level, read off one sort (np.quantile partitions once per level: 0.6 s for
  2,500 levels of 2,500 x 180 values, where this takes 30 ms)."""
  levels = (np.arange(count) + 0.5) / count
  n = len(values_NxD)
  index = np.clip(np.ceil(levels * n).astype(np.int64) - 1, 0, n - 1)
  return np.sort(values_NxD, axis=0)[index]


def sliced_w1(x_Nx2, y_Mx2, num_directions: int = NUM_DIRECTIONS) -> float:
  """The sliced 1-Wasserstein distance between two point sets in 2D (any sizes >= 1)."""
  x, y = np.asarray(x_Nx2, np.float64), np.asarray(y_Mx2, np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
    raise ValueError(f"sliced_w1 needs two nonempty [n, d] point sets, got {x.shape}, {y.shape}")
  if not (np.isfinite(x).all() and np.isfinite(y).all()):
    return float("nan")
  directions_DxK = _directions(x.shape[1], num_directions).T
  count = max(len(x), len(y))
  gap = _quantiles(x @ directions_DxK, count) - _quantiles(y @ directions_DxK, count)
  return float(np.abs(gap).mean())
