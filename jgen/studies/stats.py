"""The studies' statistics: each member's outcome from its run's rows, intervals and tests.

Every answer in a study is a distribution over seeds, and populations are small (tens of
seeds per cell), so the tests here are exact or small-sample aware: Wilson intervals rather
than the Wald interval (which collapses to zero width at 0/n or n/n, exactly the rates a
collapse study sees), exact tests across sampling orders (Fisher's, and its
Freeman-Halton extension to k groups) and McNemar's exact test for paired outcomes. The
arithmetic uses only numpy and the standard library; scipy is deliberately not a dependency.
"""

import math
import statistics

import numpy as np

from jgen.collapse import detectors

# The keys of a member's outcome, in the order outcome.json holds them.
OUTCOME_ORDER = (
  "seed_offset",
  "modes",
  "num_modes",
  "high_quality",
  "reverse_kl",
  "collapsed",
  "time_to_collapse",
  "modes_over_time",
)


def member_outcomes(rows: list[dict], detector_config=None) -> list[dict]:
  """Per member of a run, from its metrics rows: the final evaluation's modes, high_quality
  and reverse_kl, and the modes at every evaluation. With `detector_config` (a run's
  `collapse` config) also the number of modes, whether it collapsed (a mode missing at the
  end) and its time to collapse: the first evaluation at which the detectors fire, or None.

  A population's rows hold a list per metric (one value per member); a single run's rows hold
  plain values and give one member."""
  evaluations = [row for row in rows if "modes" in row]
  if not isinstance(evaluations[-1]["modes"], list):
    evaluations = [{k: v if k == "step" else [v] for k, v in row.items()} for row in evaluations]

  def of(row: dict, member: int) -> dict:
    return {k: (v[member] if isinstance(v, list) else v) for k, v in row.items()}

  outcomes = []
  for member in range(len(evaluations[-1]["modes"])):
    final = of(evaluations[-1], member)
    outcome = {
      "seed_offset": member,
      **{key: final[key] for key in ("modes", "high_quality", "reverse_kl")},
      "modes_over_time": [[row["step"], row["modes"][member]] for row in evaluations],
    }
    if detector_config is not None:
      detector, fired_at = detectors.Detector(detector_config), None
      for row in evaluations:
        if detector.observe(of(row, member)) and fired_at is None:
          fired_at = row["step"]
      outcome["num_modes"] = len(final["mode_counts"])
      outcome["collapsed"] = final["modes"] < outcome["num_modes"]
      outcome["time_to_collapse"] = fired_at
    outcomes.append({key: outcome[key] for key in OUTCOME_ORDER if key in outcome})
  return outcomes


def finite_or_none(value):
  """`value` with every NaN or infinity (the standard error of one seed, the mean of none) as
  None and tuples as lists, so that a report is valid JSON and equals itself read back."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: finite_or_none(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [finite_or_none(v) for v in value]
  return value


# R's fisher.test and scipy treat tables whose probability is within this relative
# tolerance of the observed one as "as extreme", so that ties lost to rounding still count.
_FISHER_RELATIVE_TOLERANCE = 1e-7


def _check_counts(**counts: int) -> None:
  for name, value in counts.items():
    if int(value) != value or value < 0:
      raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
  """Wilson score interval for a binomial proportion successes / trials.

  Assumes the trials are independent with one common success probability (one seed per
  trial). z is the two-sided normal quantile for `confidence`. With no trials nothing is
  known, so the interval is (0.0, 1.0). At 0/n and n/n the interval touches 0 or 1 exactly.
  """
  _check_counts(successes=successes, trials=trials)
  if successes > trials:
    raise ValueError(f"successes ({successes}) cannot exceed trials ({trials})")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
  if trials == 0:
    return 0.0, 1.0
  z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
  n = float(trials)
  p = successes / n
  z2_n = z * z / n
  center = (p + z2_n / 2) / (1 + z2_n)
  half_width = z / (1 + z2_n) * math.sqrt(p * (1 - p) / n + z2_n / (4 * n))
  # At the boundaries center == half_width analytically; pin them so rounding cannot leave
  # a 1e-17 gap that reads as "collapse never happens at rate 0".
  lower = 0.0 if successes == 0 else max(0.0, center - half_width)
  upper = 1.0 if successes == trials else min(1.0, center + half_width)
  return lower, upper


def mean_and_standard_error(values: list[float]) -> tuple[float, float]:
  """Mean and standard error of the mean, skipping None and NaN (seeds with no value).

  The standard error is the sample standard deviation (ddof=1) over sqrt(n); it assumes
  independent seeds and is undefined (NaN) for fewer than two values. No values gives
  (NaN, NaN).
  """
  kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
  if not kept:
    return math.nan, math.nan
  array = np.asarray(kept, dtype=np.float64)
  mean = float(array.mean())
  if len(kept) < 2:
    return mean, math.nan
  return mean, float(array.std(ddof=1) / math.sqrt(len(kept)))


def fisher_exact_two_sided(a: int, b: int, c: int, d: int) -> float:
  """Two-sided p-value of Fisher's exact test for the 2x2 table [[a, b], [c, d]].

  Rows are two sampling orders, columns collapsed / not collapsed. Conditioning on both
  margins, a is hypergeometric; the p-value sums the probabilities of every table with those
  margins that is no more probable than the observed one (relative tolerance 1e-7, as in R
  and scipy). Probabilities are exact integer ratios via math.comb, so there is no
  underflow for any table size.
  """
  _check_counts(a=a, b=b, c=c, d=d)
  a, b, c, d = int(a), int(b), int(c), int(d)
  row1, row2, col1 = a + b, c + d, a + c
  lowest, highest = max(0, col1 - row2), min(row1, col1)
  # Weights share the denominator comb(n, col1), so compare and sum the integer numerators.
  weights = {x: math.comb(row1, x) * math.comb(row2, col1 - x) for x in range(lowest, highest + 1)}
  observed = weights[a]
  scale = round(1 / _FISHER_RELATIVE_TOLERANCE)
  extreme = sum(w for w in weights.values() if w * scale <= observed * (scale + 1))
  return min(1.0, extreme / math.comb(row1 + row2, col1))


def mcnemar_exact(only_first: int, only_second: int) -> float:
  """Two-sided p-value of McNemar's test for paired binary outcomes, in its exact form.

  McNemar (1947), "Note on the sampling error of the difference between correlated proportions
  or percentages", Psychometrika 12(2):153-157. Each pair (a case branched two ways) is a
  success or failure under each condition; only the discordant pairs carry information:
  `only_first` succeeded under the first condition alone, `only_second` under the second
  alone. Under the null that the two conditions succeed equally often, given n = only_first +
  only_second discordant pairs, only_first is Binomial(n, 1/2); the exact conditional p-value
  is min(1, 2 P(X <= the smaller count)), the binomial sign test (Fagerland, Lydersen and Laake
  2013, BMC Medical Research Methodology 13:91, compare it with the asymptotic and mid-p
  forms). No discordant pairs gives 1.0. The chi-square form is not used: a study of tens of
  cases has few discordant pairs, where it is far from exact.
  """
  _check_counts(only_first=only_first, only_second=only_second)
  b, c = int(only_first), int(only_second)
  n = b + c
  tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
  return min(1.0, 2 * tail / 2**n)  # integers until the last division: exact for any n


def _upper_regularized_gamma(a: float, x: float) -> float:
  """Q(a, x) = Gamma(a, x) / Gamma(a), as in Numerical Recipes (gser / gcf)."""
  if x <= 0:
    return 1.0
  log_prefactor = -x + a * math.log(x) - math.lgamma(a)
  if x < a + 1:
    # The series for P(a, x) converges fast here; Q = 1 - P loses nothing when P is small.
    term = total = 1.0 / a
    denominator = a
    for _ in range(10_000):
      denominator += 1
      term *= x / denominator
      total += term
      if abs(term) < abs(total) * 1e-16:
        break
    return max(0.0, 1.0 - total * math.exp(log_prefactor))
  # Modified Lentz continued fraction for Q directly: accurate deep in the tail.
  tiny = 1e-300
  b = x + 1 - a
  c = 1 / tiny
  d = 1 / b
  h = d
  for i in range(1, 10_000):
    an = -i * (i - a)
    b += 2
    d = an * d + b
    d = tiny if abs(d) < tiny else d
    c = b + an / c
    c = tiny if abs(c) < tiny else c
    d = 1 / d
    delta = d * c
    h *= delta
    if abs(delta - 1) < 1e-16:
      break
  return min(1.0, h * math.exp(log_prefactor))


def chi_square_survival(x: float, dof: int) -> float:
  """P(X >= x) for X chi-square with dof degrees of freedom: Q(dof / 2, x / 2)."""
  if dof < 1 or int(dof) != dof:
    raise ValueError(f"dof must be a positive integer, got {dof!r}")
  return _upper_regularized_gamma(dof / 2, x / 2)


def chi_square_homogeneity(counts: list[tuple[int, int]]) -> tuple[float, int, float]:
  """Pearson chi-square test that k groups share one collapse rate.

  counts holds (collapsed, not collapsed) per group. Returns (statistic, dof = k - 1,
  p-value) with the p-value from the chi-square survival function. Groups with no trials
  carry no information and are dropped before k is counted. If every observation falls in
  one column (all collapsed or none), the rates are identical and the result is
  (0.0, k - 1, 1.0); fewer than two non-empty groups gives (0.0, 0, 1.0). The chi-square
  approximation assumes expected counts of roughly 5 or more; for two groups prefer
  fisher_exact_two_sided.
  """
  for index, (collapsed, survived) in enumerate(counts):
    _check_counts(**{f"counts[{index}][0]": collapsed, f"counts[{index}][1]": survived})
  table = np.asarray([row for row in counts if row[0] + row[1] > 0], dtype=np.float64)
  k = len(table)
  if k < 2:
    return 0.0, 0, 1.0
  column_totals = table.sum(axis=0)
  if np.any(column_totals == 0):
    return 0.0, k - 1, 1.0
  expected = np.outer(table.sum(axis=1), column_totals) / table.sum()
  statistic = float(np.sum((table - expected) ** 2 / expected))
  return statistic, k - 1, chi_square_survival(statistic, k - 1)


# Beyond this many tables the exact test is not enumerated and the chi-square p-value is used.
_EXACT_TABLE_LIMIT = 5_000_000


def exact_homogeneity(counts: list[tuple[int, int]]) -> float | None:
  """Exact test that k groups share one collapse rate (Freeman and Halton 1951).

  counts holds (collapsed, not collapsed) per group. Under the null, with both margins
  fixed, a table's probability is prod_i C(n_i, a_i) / C(N, A); the p-value is the total
  probability of the tables no more probable than the observed one. For two groups this is
  Fisher's exact test. Exact where the chi-square approximation is not (expected counts
  under 5, as when almost every seed collapses). None when there are more than
  _EXACT_TABLE_LIMIT tables to enumerate.
  """
  for index, (collapsed, survived) in enumerate(counts):
    _check_counts(**{f"counts[{index}][0]": collapsed, f"counts[{index}][1]": survived})
  sizes = [a + b for a, b in counts if a + b > 0]
  observed = [a for a, b in counts if a + b > 0]
  if len(sizes) < 2:
    return 1.0
  if math.prod(n + 1 for n in sizes[:-1]) > _EXACT_TABLE_LIMIT:
    return None

  def log_choose(n: int) -> np.ndarray:
    return np.array(
      [math.lgamma(n + 1) - math.lgamma(a + 1) - math.lgamma(n - a + 1) for a in range(n + 1)]
    )

  # Every choice of the first k-1 groups' counts; the last group's count is what is left.
  log_weight, total = np.zeros(()), np.zeros((), dtype=np.int64)
  for n in sizes[:-1]:
    log_weight = np.add.outer(log_weight, log_choose(n))
    total = np.add.outer(total, np.arange(n + 1))
  last = sum(observed) - total
  valid = (last >= 0) & (last <= sizes[-1])
  log_weight = np.where(
    valid, log_weight + log_choose(sizes[-1])[np.clip(last, 0, sizes[-1])], -np.inf
  )
  observed_log_weight = sum(log_choose(n)[a] for n, a in zip(sizes, observed, strict=True))
  scale = log_weight.max()
  weights = np.exp(log_weight - scale)
  as_extreme = log_weight <= observed_log_weight + _FISHER_RELATIVE_TOLERANCE
  return float(min(1.0, weights[as_extreme].sum() / weights.sum()))


def compare_groups(outcomes: dict[str, list[bool]]) -> dict:
  """Compare collapse rates across a block of sampling orders (name -> per-seed flags).

  The p-value is exact: Fisher's test for two groups, its Freeman-Halton extension for more
  (the chi-square approximation fails at the near-0 or near-1 rates collapse studies see).
  The Pearson chi-square statistic, dof and p-value are reported beside it for more than two
  groups, and stand in for the exact p-value only when the table is too large to enumerate.
  Each group gets its collapsed count, trials, rate (None with no trials) and a 95% Wilson
  interval.
  """
  if len(outcomes) < 2:
    raise ValueError(f"compare_groups needs at least two groups, got {len(outcomes)}")
  groups = {}
  for name, flags in outcomes.items():
    collapsed, trials = sum(bool(flag) for flag in flags), len(flags)
    lower, upper = wilson_interval(collapsed, trials)
    groups[name] = {
      "collapsed": collapsed,
      "trials": trials,
      "rate": collapsed / trials if trials else None,
      "wilson_95": [lower, upper],
    }
  counts = [(g["collapsed"], g["trials"] - g["collapsed"]) for g in groups.values()]
  if len(groups) == 2:
    (a, b), (c, d) = counts
    return {
      "method": "Fisher's exact test, two-sided",
      "statistic": None,
      "dof": None,
      "p_value": fisher_exact_two_sided(a, b, c, d),
      "groups": groups,
    }
  statistic, dof, chi_square_p = chi_square_homogeneity(counts)
  method, p_value = "Freeman-Halton exact test (Fisher's, k groups)", exact_homogeneity(counts)
  if p_value is None:
    method = "Pearson chi-square test of homogeneity (table too large for exact)"
    p_value = chi_square_p
  return {
    "method": method,
    "statistic": statistic,
    "dof": dof,
    "p_value": p_value,
    "chi_square_p_value": chi_square_p,
    "groups": groups,
  }


def time_to_collapse_summary(steps: list[int | None]) -> dict:
  """Summarize collapse steps over seeds; None marks a seed that never collapsed.

  Returns {collapsed, median, min, max, values} over the collapsed seeds, values sorted;
  median, min and max are None when no seed collapsed. The median is not the median time
  to collapse of the population (survivors are censored), only of those that collapsed.
  """
  values = sorted(int(step) for step in steps if step is not None)
  return {
    "collapsed": len(values),
    "median": float(statistics.median(values)) if values else None,
    "min": values[0] if values else None,
    "max": values[-1] if values else None,
    "values": values,
  }
