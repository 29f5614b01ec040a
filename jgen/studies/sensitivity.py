"""How sensitive a generator is to its optimizer, from a table of learning rates and endpoints.

The optimizer study (optimizer_sensitivity.py) trains, per family, optimizer and data set, a grid
of learning rates with the same seeds each. This module reads such a table; it trains nothing.
Every number is of the endpoint `sliced_w1` (the sliced 1-Wasserstein distance of the samples to
the mixture, jgen/evals/distances.py: lower is better), averaged over seeds; a rate that diverged
counts as infinitely far.

- the best rate: the one with the lowest mean endpoint; *bracketed* when it is not the smallest or
  the largest rate of the grid (otherwise the optimum may lie outside it);
- the basin: the contiguous run of grid rates around the best whose mean endpoint is within
  `tolerance` of the best (mean <= best x (1 + tolerance)); its width in decades,
  log10(largest / smallest rate in it), is 0 when only the best rate qualifies;
- per family and data set, the spread of the best endpoint across optimizers: max - min of each
  optimizer's best mean (0: every optimizer reaches the same quality at its own best rate).

A family is insensitive to the optimizer when its spread is small and its basins are wide.
"""

import math

import numpy as np

ENDPOINT = "sliced_w1"


def rate_endpoint(entry: dict) -> float:
  """The mean endpoint over a rate's seeds; +inf if it diverged or no seed has a value."""
  values = [seed[ENDPOINT] for seed in entry["seeds"] if seed.get(ENDPOINT) is not None]
  if entry.get("diverged") or not values:
    return math.inf
  return float(np.mean(values))


def _sorted(by_rate: list[dict]) -> list[dict]:
  if not by_rate:
    raise ValueError("no learning rates to read")
  rates = [entry["lr"] for entry in by_rate]
  if len(set(rates)) != len(rates):
    raise ValueError(f"a learning rate appears twice: {sorted(rates)}")
  return sorted(by_rate, key=lambda entry: entry["lr"])


def best(by_rate: list[dict]) -> dict:
  """{lr, endpoint, index, bracketed} of the rate with the lowest mean endpoint (the smaller
  rate on a tie)."""
  ordered = _sorted(by_rate)
  endpoints = [rate_endpoint(entry) for entry in ordered]
  index = int(np.argmin(endpoints))
  return {
    "lr": ordered[index]["lr"],
    "endpoint": endpoints[index],
    "index": index,
    "bracketed": 0 < index < len(ordered) - 1,
  }


def basin(by_rate: list[dict], tolerance: float) -> dict:
  """{low, high, decades}: the contiguous rates around the best within `tolerance` of it."""
  if tolerance < 0:
    raise ValueError(f"the basin tolerance must be >= 0, got {tolerance}")
  ordered = _sorted(by_rate)
  endpoints = [rate_endpoint(entry) for entry in ordered]
  top = best(ordered)
  if not math.isfinite(top["endpoint"]):
    return {"low": None, "high": None, "decades": 0.0}
  limit = top["endpoint"] * (1 + tolerance)
  low = high = top["index"]
  while low > 0 and endpoints[low - 1] <= limit:
    low -= 1
  while high < len(ordered) - 1 and endpoints[high + 1] <= limit:
    high += 1
  low_rate, high_rate = ordered[low]["lr"], ordered[high]["lr"]
  return {"low": low_rate, "high": high_rate, "decades": math.log10(high_rate / low_rate)}


def next_rates(rates: list[float], best_index: int, count: int) -> list[float]:
  """`count` more rates past the edge where the best lies, at the grid's own log spacing; []
  when the best is bracketed. The grid's spacing is that of its two outermost rates on that
  side."""
  ordered = sorted(rates)
  if len(ordered) < 2 or 0 < best_index < len(ordered) - 1:
    return []
  if best_index == 0:
    ratio = ordered[0] / ordered[1]
    return [ordered[0] * ratio ** (k + 1) for k in range(count)]
  ratio = ordered[-1] / ordered[-2]
  return [ordered[-1] * ratio ** (k + 1) for k in range(count)]


def family_sensitivity(per_optimizer: dict[str, list[dict]], tolerance: float) -> dict:
  """For one family on one data set, {optimizer: by_rate}: each optimizer's best rate and
  basin, and the spread of the best endpoint across optimizers (None when an optimizer never
  trained to a finite endpoint)."""
  optimizers = {
    name: {"best": best(by_rate), "basin": basin(by_rate, tolerance)}
    for name, by_rate in per_optimizer.items()
  }
  bests = [entry["best"]["endpoint"] for entry in optimizers.values()]
  finite = all(math.isfinite(value) for value in bests)
  return {
    "optimizers": optimizers,
    "spread": max(bests) - min(bests) if finite else None,
    "spread_95": spread_interval(per_optimizer) if finite else None,
    "ratio": max(bests) / min(bests) if finite and min(bests) > 0 else None,
    "every_optimum_bracketed": all(e["best"]["bracketed"] for e in optimizers.values()),
  }


def _resampled(by_rate: list[dict], picks: np.ndarray) -> list[dict]:
  return [
    dict(entry, seeds=[entry["seeds"][i] for i in picks] if entry["seeds"] else [])
    for entry in by_rate
  ]


def spread_interval(
  per_optimizer: dict[str, list[dict]], resamples: int = 2000, seed: int = 0
) -> list[float] | None:
  """A 95% percentile bootstrap interval of the spread: the seeds are drawn with replacement,
  the same draw for every rate and optimizer (seed k is the same seed number in every cell, so
  the cells are paired), and best rates are chosen again in each resample. None when a cell
  has no finite endpoint or the cells hold different numbers of seeds."""
  counts = {len(e["seeds"]) for by_rate in per_optimizer.values() for e in by_rate if e["seeds"]}
  if len(counts) != 1:
    return None
  (count,) = counts
  rng = np.random.default_rng(seed)
  spreads = []
  for _ in range(resamples):
    picks = rng.integers(0, count, count)
    bests = [best(_resampled(by_rate, picks))["endpoint"] for by_rate in per_optimizer.values()]
    if not all(math.isfinite(value) for value in bests):
      return None
    spreads.append(max(bests) - min(bests))
  return [float(np.quantile(spreads, 0.025)), float(np.quantile(spreads, 0.975))]


def flattening(curve: list[list[float]], fraction: float = 0.4) -> float | None:
  """The relative change of a mean endpoint curve [[step, value], ...] over its last `fraction`
  of steps: (value at (1 - fraction) of the run - final value) / final value. Near 0: the curve
  has flattened; > 0: it was still falling."""
  if not curve:
    return None
  last_step, final = curve[-1]
  start = (1 - fraction) * last_step
  earlier = [value for step, value in curve if step <= start]
  if not earlier or final is None or final <= 0 or earlier[-1] is None:
    return None
  return (earlier[-1] - final) / final
