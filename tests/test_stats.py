"""Statistics of the sampling-order study: known values, properties, and error cases."""

import itertools
import math

import numpy as np
import pytest

from jgen.studies import stats


@pytest.mark.parametrize(
  "successes, trials, expected",
  [
    (0, 10, (0.0, 0.2775)),
    (10, 10, (0.7225, 1.0)),
    (5, 10, (0.2366, 0.7634)),
    (1, 20, (0.0089, 0.2361)),
  ],
)
def test_wilson_known_values(successes, trials, expected):
  np.testing.assert_allclose(stats.wilson_interval(successes, trials), expected, atol=5e-5)


def test_wilson_matches_formula():
  z = 1.959963984540054
  n, p = 20, 1 / 20
  center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
  half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
  np.testing.assert_allclose(stats.wilson_interval(1, 20), (center - half, center + half))


def test_wilson_properties():
  assert stats.wilson_interval(0, 0) == (0.0, 1.0)
  for trials in (1, 7, 50):
    for successes in range(trials + 1):
      lower, upper = stats.wilson_interval(successes, trials)
      assert 0.0 <= lower <= successes / trials <= upper <= 1.0
  widths = [np.diff(stats.wilson_interval(3 * m, 10 * m))[0] for m in (1, 4, 16)]
  assert widths[0] > widths[1] > widths[2] > 0
  narrow, wide = stats.wilson_interval(5, 10, 0.5), stats.wilson_interval(5, 10, 0.99)
  assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_mean_and_standard_error():
  mean, se = stats.mean_and_standard_error([1.0, None, 2.0, float("nan"), 3.0, 6.0])
  assert mean == 3.0
  np.testing.assert_allclose(se, np.std([1, 2, 3, 6], ddof=1) / 2)
  mean, se = stats.mean_and_standard_error([4.0, None])
  assert mean == 4.0 and math.isnan(se)
  assert all(math.isnan(v) for v in stats.mean_and_standard_error([None, float("nan")]))


@pytest.mark.parametrize(
  "table, expected",
  [((8, 2, 1, 5), 0.03496503), ((3, 1, 1, 3), 34 / 70), ((5, 5, 5, 5), 1.0)],
)
def test_fisher_known_values(table, expected):
  np.testing.assert_allclose(stats.fisher_exact_two_sided(*table), expected, rtol=1e-6)


def test_fisher_properties():
  rng = np.random.default_rng(0)
  for _ in range(50):
    a, b, c, d = (int(v) for v in rng.integers(0, 12, size=4))
    p = stats.fisher_exact_two_sided(a, b, c, d)
    assert 0.0 < p <= 1.0
    assert p == stats.fisher_exact_two_sided(c, d, a, b)
    np.testing.assert_allclose(p, stats.fisher_exact_two_sided(a, c, b, d), rtol=1e-12)
    assert stats.fisher_exact_two_sided(a, b, a, b) == 1.0
  # All 10 vs none of 10: only the observed table and its mirror are this extreme.
  np.testing.assert_allclose(stats.fisher_exact_two_sided(10, 0, 0, 10), 2 / math.comb(20, 10))


def test_chi_square_survival_closed_forms():
  for x in (0.1, 1.0, 2.5, 7.0, 20.0, 60.0):
    np.testing.assert_allclose(stats.chi_square_survival(x, 1), math.erfc(math.sqrt(x / 2)))
    np.testing.assert_allclose(stats.chi_square_survival(x, 2), math.exp(-x / 2), rtol=1e-12)
    dof3 = math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
    np.testing.assert_allclose(stats.chi_square_survival(x, 3), dof3, rtol=1e-12)
    np.testing.assert_allclose(
      stats.chi_square_survival(x, 4), (1 + x / 2) * math.exp(-x / 2), rtol=1e-12
    )
  assert stats.chi_square_survival(0.0, 3) == 1.0
  np.testing.assert_allclose(stats.chi_square_survival(20.0, 1), 7.7442e-06, rtol=1e-4)


def test_chi_square_known_values():
  statistic, dof, p = stats.chi_square_homogeneity([(10, 0), (0, 10)])
  assert (statistic, dof) == (20.0, 1)
  np.testing.assert_allclose(p, 7.7442e-06, rtol=1e-4)

  counts = [(2, 8), (5, 5), (9, 1)]
  observed = np.array(counts, dtype=float)
  expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
  by_hand = ((observed - expected) ** 2 / expected).sum()
  statistic, dof, p = stats.chi_square_homogeneity(counts)
  np.testing.assert_allclose(statistic, by_hand, rtol=1e-12)
  np.testing.assert_allclose(statistic, 9.9107, atol=1e-4)
  assert dof == 2
  np.testing.assert_allclose(p, math.exp(-by_hand / 2), rtol=1e-12)


def test_chi_square_degenerate_tables():
  assert stats.chi_square_homogeneity([(3, 0), (5, 0), (1, 0)]) == (0.0, 2, 1.0)
  assert stats.chi_square_homogeneity([(0, 4), (0, 0), (0, 2)]) == (0.0, 1, 1.0)
  assert stats.chi_square_homogeneity([(0, 0), (3, 4)]) == (0.0, 0, 1.0)
  # An empty group changes nothing: it is dropped before dof is counted.
  assert stats.chi_square_homogeneity([(2, 8), (0, 0), (9, 1)]) == stats.chi_square_homogeneity(
    [(2, 8), (9, 1)]
  )
  rng = np.random.default_rng(1)
  for _ in range(20):
    counts = [tuple(int(v) for v in row) for row in rng.integers(0, 15, size=(4, 2))]
    assert 0.0 <= stats.chi_square_homogeneity(counts)[2] <= 1.0


def test_compare_two_groups_uses_fisher():
  result = stats.compare_groups({"epoch": [True] * 8 + [False] * 2, "streak": [True] + [False] * 5})
  assert result["method"] == "Fisher's exact test, two-sided"
  assert result["statistic"] is None and result["dof"] is None
  np.testing.assert_allclose(result["p_value"], 0.03496503, rtol=1e-6)
  epoch = result["groups"]["epoch"]
  assert (epoch["collapsed"], epoch["trials"], epoch["rate"]) == (8, 10, 0.8)
  np.testing.assert_allclose(epoch["wilson_95"], [0.490162, 0.943318], atol=1e-6)
  assert list(result["groups"]) == ["epoch", "streak"]


def _brute_force_exact(counts):
  """Freeman-Halton by listing every table with the observed margins (itertools)."""
  sizes = [a + b for a, b in counts]
  total = sum(a for a, _ in counts)
  weight = lambda table: math.prod(math.comb(n, a) for n, a in zip(sizes, table, strict=True))
  tables = [t for t in itertools.product(*(range(n + 1) for n in sizes)) if sum(t) == total]
  observed = weight([a for a, _ in counts])
  return sum(weight(t) for t in tables if weight(t) <= observed) / math.comb(sum(sizes), total)


def test_exact_homogeneity_by_hand_and_by_enumeration():
  # Two members per group, 1, 0 and 2 collapsed: the 7 tables with 3 collapsed of 6 weigh
  # 2, 2, 2, 8, 2, 2, 2 (of C(6, 3) = 20); the observed one weighs 2, so p = 12 / 20.
  assert stats.exact_homogeneity([(1, 1), (0, 2), (2, 0)]) == pytest.approx(0.6, abs=1e-12)
  # Two groups: Fisher's exact test.
  assert stats.exact_homogeneity([(8, 2), (1, 5)]) == pytest.approx(
    stats.fisher_exact_two_sided(8, 2, 1, 5), rel=1e-12
  )
  rng = np.random.default_rng(3)
  for _ in range(10):
    counts = [tuple(int(v) for v in row) for row in rng.integers(0, 7, size=(3, 2))]
    assert stats.exact_homogeneity(counts) == pytest.approx(_brute_force_exact(counts))


def test_compare_many_groups_uses_the_exact_test_and_reports_chi_square():
  flags = lambda collapsed, total: [True] * collapsed + [False] * (total - collapsed)
  result = stats.compare_groups({"a": flags(2, 10), "b": flags(5, 10), "c": flags(9, 10)})
  assert result["method"] == "Freeman-Halton exact test (Fisher's, k groups)"
  assert result["dof"] == 2
  assert result["p_value"] == pytest.approx(_brute_force_exact([(2, 8), (5, 5), (9, 1)]))
  # By hand: every row has 10 members and the columns 16 and 14 of 30, so the expected counts
  # are 16/3 and 14/3 per row; chi2 = 9.910714, and with 2 dof p = exp(-chi2 / 2).
  np.testing.assert_allclose(result["statistic"], 9.910714285714285, rtol=1e-12)
  np.testing.assert_allclose(result["chi_square_p_value"], 0.007045563557544706, rtol=1e-9)
  empty = stats.compare_groups({"a": [], "b": [True]})
  assert empty["groups"]["a"]["rate"] is None
  assert empty["groups"]["a"]["wilson_95"] == [0.0, 1.0]


def test_compare_groups_falls_back_to_chi_square_past_the_enumeration_limit(monkeypatch):
  monkeypatch.setattr(stats, "_EXACT_TABLE_LIMIT", 10)
  flags = lambda collapsed, total: [True] * collapsed + [False] * (total - collapsed)
  result = stats.compare_groups({"a": flags(2, 10), "b": flags(5, 10), "c": flags(9, 10)})
  assert result["method"].startswith("Pearson chi-square")
  assert result["p_value"] == result["chi_square_p_value"]


def test_time_to_collapse_summary():
  summary = stats.time_to_collapse_summary([400, None, 100, 250, None, 300])
  assert summary == {
    "collapsed": 4,
    "median": 275.0,
    "min": 100,
    "max": 400,
    "values": [100, 250, 300, 400],
  }
  none = stats.time_to_collapse_summary([None, None])
  assert none == {"collapsed": 0, "median": None, "min": None, "max": None, "values": []}


@pytest.mark.parametrize(
  "call, message",
  [
    (lambda: stats.wilson_interval(11, 10), "cannot exceed trials"),
    (lambda: stats.wilson_interval(-1, 10), "successes must be a non-negative integer"),
    (lambda: stats.wilson_interval(1, -10), "trials must be a non-negative integer"),
    (lambda: stats.wilson_interval(1, 10, 1.0), "confidence must be in"),
    (lambda: stats.fisher_exact_two_sided(1, -2, 3, 4), "b must be a non-negative integer"),
    (lambda: stats.fisher_exact_two_sided(1, 2.5, 3, 4), "b must be a non-negative integer"),
    (lambda: stats.chi_square_homogeneity([(1, 2), (3, -1)]), r"counts\[1\]\[1\] must be"),
    (lambda: stats.chi_square_survival(1.0, 0), "dof must be a positive integer"),
    (lambda: stats.compare_groups({"only": [True]}), "at least two groups"),
  ],
)
def test_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()
