"""The preregistered statistics of a within-seed design: a trend test, effect sizes, power.

Each block of the sampling-order study (docs/preregistration/sampling_order.md) trains every
seed under every order, so its endpoint is a table [seeds, orders] and each order carries a
repetitiveness score fixed in advance. Here:

  trend_permutation_test  one-sided test that the endpoint falls as the score rises: statistic
                          T = sum over seeds and orders of score x endpoint, its null
                          distribution from permuting the order labels within each seed;
  trend_slope             the least-squares slope of the endpoint on the score (with every
                          seed under every order, the pooled slope is the within-seed one), and
                          `extreme_difference`, the slope times the score range;
  bootstrap_interval      a percentile interval of any such statistic, resampling seeds;
  newcombe_interval       the difference of two proportions with Newcombe's hybrid score
                          interval (his method 10: Wilson intervals of each proportion);
  holm                    Holm's step-down adjusted p-values;
  trend_power             the normal-approximation power of the trend test for an effect;
  two_group_difference    two independent groups of seeds (the set-D study's cells): the
                          difference in means, a bootstrap interval, a permutation p-value;
  paired_difference       paired values (the inverse table's digits): the mean difference
                          with a bootstrap interval that resamples the pairs.

Every random draw comes from numpy's Generator with a stated seed, so a report is reproduced
bit for bit. All pure numpy; tests/test_effects.py, test_set_d_matched.py and
test_inverse_table.py work each on hand-made tables.
"""

import math

import numpy as np

from jgen.studies import stats


def _table(endpoints_SxO, scores_O) -> tuple[np.ndarray, np.ndarray]:
  endpoints = np.asarray(endpoints_SxO, dtype=np.float64)
  scores = np.asarray(scores_O, dtype=np.float64)
  if endpoints.ndim != 2 or endpoints.shape[1] != scores.shape[0] or endpoints.shape[0] < 1:
    raise ValueError(
      f"the endpoint table must be [seeds, orders] with one score per order; got "
      f"{endpoints.shape} and {scores.shape[0]} scores"
    )
  if not np.all(np.isfinite(endpoints)):
    raise ValueError("the endpoint table holds a NaN or an infinity; every cell needs a value")
  if np.ptp(scores) == 0:
    raise ValueError("the scores are all equal: there is no trend to test")
  return endpoints, scores


def trend_permutation_test(
  endpoints_SxO, scores_O, permutations: int = 20_000, seed: int = 0
) -> dict:
  """One-sided p-value that the endpoint falls as the score rises. Permuting labels within a
  seed keeps each seed's own level, which the shared seeds make the unit of the design. The
  p-value counts the observed statistic among the permutations ((1 + #{T* <= T}) / (1 + R)),
  so it is never 0."""
  endpoints, scores = _table(endpoints_SxO, scores_O)
  observed = float((endpoints * scores).sum())
  rng = np.random.default_rng(seed)
  seeds, orders = endpoints.shape
  at_most, done = 0, 0
  while done < permutations:  # in chunks: 20,000 x 64 x 5 floats at once is needless memory
    chunk = min(2_000, permutations - done)
    order_RxSxO = np.argsort(rng.random((chunk, seeds, orders)), axis=2)
    permuted = scores[order_RxSxO]
    statistics = (permuted * endpoints[None]).sum(axis=(1, 2))
    at_most += int((statistics <= observed + 1e-9 * max(1.0, abs(observed))).sum())
    done += chunk
  return {
    "method": "within-seed permutation trend test (one-sided: falls with the score)",
    "statistic": observed,
    "permutations": permutations,
    "p_value": (1 + at_most) / (1 + permutations),
  }


def trend_slope(endpoints_SxO, scores_O) -> float:
  """Least-squares slope of the endpoint on the score, every cell of the table one point."""
  endpoints, scores = _table(endpoints_SxO, scores_O)
  centered = scores - scores.mean()
  return float((endpoints * centered).sum() / (endpoints.shape[0] * (centered**2).sum()))


def extreme_difference(endpoints_SxO, scores_O) -> float:
  """The slope times the score range: the fitted difference between the most and the least
  repetitive order."""
  return trend_slope(endpoints_SxO, scores_O) * float(np.ptp(np.asarray(scores_O, float)))


def bootstrap_interval(
  statistic, endpoints_SxO, scores_O, confidence: float, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
  """Percentile interval of `statistic(table, scores)` over tables of seeds drawn with
  replacement."""
  endpoints, scores = _table(endpoints_SxO, scores_O)
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
  rng = np.random.default_rng(seed)
  seeds = endpoints.shape[0]
  values = np.array(
    [statistic(endpoints[rng.integers(0, seeds, seeds)], scores) for _ in range(resamples)]
  )
  tail = (1 - confidence) / 2
  return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def newcombe_interval(
  successes_1: int, trials_1: int, successes_2: int, trials_2: int, confidence: float = 0.95
) -> dict:
  """p1 - p2 with Newcombe's hybrid score interval (Newcombe 1998, Stat. Med. 17:873, method
  10), built from each proportion's Wilson interval. It assumes independent samples; for two
  orders sharing seeds it is conservative."""
  p1, p2 = successes_1 / trials_1, successes_2 / trials_2
  low_1, high_1 = stats.wilson_interval(successes_1, trials_1, confidence)
  low_2, high_2 = stats.wilson_interval(successes_2, trials_2, confidence)
  difference = p1 - p2
  return {
    "difference": difference,
    "interval": [
      difference - math.sqrt((p1 - low_1) ** 2 + (high_2 - p2) ** 2),
      difference + math.sqrt((high_1 - p1) ** 2 + (p2 - low_2) ** 2),
    ],
    "method": f"Newcombe hybrid score {round(confidence * 100)}% interval",
  }


def holm(p_values: dict) -> dict:
  """Holm's step-down adjusted p-values, by name (monotone, at most 1)."""
  names = sorted(p_values, key=lambda name: p_values[name])
  adjusted, running = {}, 0.0
  for rank, name in enumerate(names):
    running = max(running, min(1.0, (len(names) - rank) * p_values[name]))
    adjusted[name] = running
  return adjusted


def _normal_quantile(p: float) -> float:
  """Inverse of the standard normal CDF, by bisection on math.erf (exact to ~1e-12)."""
  low, high = -40.0, 40.0
  for _ in range(200):
    middle = (low + high) / 2
    if 0.5 * (1 + math.erf(middle / math.sqrt(2))) < p:
      low = middle
    else:
      high = middle
  return (low + high) / 2


def trend_power(extreme_difference: float, sd: float, seeds: int, scores_O, alpha: float) -> float:
  """Power of a one-sided trend test at level `alpha` to detect a linear trend whose extreme
  difference is `extreme_difference`, for independent observations of standard deviation `sd`
  (normal approximation; the within-seed design can only do better)."""
  scores = np.asarray(scores_O, dtype=np.float64)
  if sd <= 0 or seeds < 1:
    raise ValueError(f"power needs sd > 0 and seeds >= 1, got sd={sd}, seeds={seeds}")
  slope = abs(extreme_difference) / float(np.ptp(scores))
  standard_error = sd / math.sqrt(seeds * float(((scores - scores.mean()) ** 2).sum()))
  z = slope / standard_error - _normal_quantile(1 - alpha)
  return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def residual_sd(endpoints_SxO) -> float:
  """The standard deviation of the endpoint around its seed and order means (two-way
  residuals): the noise the within-seed test works against."""
  endpoints = np.asarray(endpoints_SxO, dtype=np.float64)
  residual = (
    endpoints - endpoints.mean(axis=1, keepdims=True) - endpoints.mean(axis=0) + endpoints.mean()
  )
  dof = (endpoints.shape[0] - 1) * (endpoints.shape[1] - 1)
  return math.sqrt(float((residual**2).sum()) / dof) if dof else float("nan")


def two_group_difference(
  first, second, resamples: int = 10_000, permutations: int = 20_000, seed: int = 0
) -> dict:
  """mean(first) - mean(second) for two independent groups (seeds of two cells): a percentile
  bootstrap 95% interval (each group resampled on its own) and a two-sided permutation p-value
  (group labels shuffled; (1 + as extreme) / (1 + permutations))."""
  a, b = np.asarray(first, np.float64), np.asarray(second, np.float64)
  if len(a) < 2 or len(b) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
    raise ValueError(f"two groups of >= 2 finite values are needed, got {len(a)} and {len(b)}")
  rng = np.random.default_rng(seed)
  observed = float(a.mean() - b.mean())
  boot = a[rng.integers(0, len(a), (resamples, len(a)))].mean(axis=1) - b[
    rng.integers(0, len(b), (resamples, len(b)))
  ].mean(axis=1)
  pooled = np.concatenate([a, b])
  shuffled = np.argsort(rng.random((permutations, len(pooled))), axis=1)
  permuted = pooled[shuffled]
  differences = permuted[:, : len(a)].mean(axis=1) - permuted[:, len(a) :].mean(axis=1)
  extreme = int((np.abs(differences) >= abs(observed) - 1e-12).sum())
  return {
    "difference": observed,
    "interval_95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
    "p_value": (1 + extreme) / (1 + permutations),
    "method": "percentile bootstrap; two-sided permutation test of the difference in means",
  }


def paired_difference(
  first, second, resamples: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> dict:
  """mean(first - second) over paired units (digits scored by two methods, say) with a percentile
  bootstrap interval that resamples the units, each keeping its pair: the spread between units
  cancels, only the spread of the differences counts. `resamples` draws from numpy's Generator
  seeded with `seed`, so an interval is reproduced bit for bit."""
  a, b = np.asarray(first, np.float64), np.asarray(second, np.float64)
  if a.ndim != 1 or a.shape != b.shape or len(a) < 2:
    raise ValueError(f"two paired vectors of >= 2 values are needed, got {a.shape} and {b.shape}")
  if not (np.isfinite(a).all() and np.isfinite(b).all()):
    raise ValueError("a paired value is a NaN or an infinity; every unit needs both values")
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
  differences = a - b
  rng = np.random.default_rng(seed)
  means = np.empty(resamples)
  for start in range(0, resamples, 2_000):  # 10,000 x 64 at once is needless memory
    rows = min(2_000, resamples - start)
    indices = rng.integers(0, len(differences), (rows, len(differences)))
    means[start : start + rows] = differences[indices].mean(axis=1)
  tail = (1 - confidence) / 2
  return {
    "difference": float(differences.mean()),
    "interval": [float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))],
    "confidence": confidence,
    "units": len(differences),
    "method": f"paired percentile bootstrap ({resamples} resamples of the units, seed {seed})",
  }
