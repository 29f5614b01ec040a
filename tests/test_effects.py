"""The preregistered statistics (jgen/studies/effects.py) on hand-worked tables, and checks
that each can fail: a test that finds a trend where there is one, an interval that excludes 0
where the difference is real."""

import math

import numpy as np
import pytest

from jgen.studies import effects

SCORES = [0, 0, 1, 2, 3]  # the preregistered repetitiveness scores of the five orders


def test_the_permutation_p_value_matches_the_exact_one_on_a_small_table():
  # Two orders, three seeds: swapping within a seed gives 8 equally likely tables, and only
  # the observed one has T = 1 + 1 + 4 = 6 or less, so the exact one-sided p is 1/8.
  table = [[2, 1], [3, 1], [5, 4]]
  result = effects.trend_permutation_test(table, [0, 1], permutations=20_000, seed=0)
  assert result["statistic"] == 6
  assert abs(result["p_value"] - 1 / 8) < 0.01


def test_the_trend_test_finds_a_falling_trend_and_not_a_rising_one():
  rng = np.random.default_rng(5)
  noise = rng.normal(0, 1, (64, 5))
  falling = 7 - 0.5 * np.asarray(SCORES) + noise
  assert effects.trend_permutation_test(falling, SCORES, 4000)["p_value"] < 0.001
  rising = 7 + 0.5 * np.asarray(SCORES) + noise
  assert effects.trend_permutation_test(rising, SCORES, 4000)["p_value"] > 0.99
  flat = 7 + noise
  assert 0.01 < effects.trend_permutation_test(flat, SCORES, 4000)["p_value"] < 0.99


def test_slope_and_extreme_difference_by_hand():
  # centred scores (-0.5, 0.5); sum of endpoint x centred score = 0.5 + 0.5; / (2 x 0.5) = 1.
  assert effects.trend_slope([[1, 2], [3, 4]], [0, 1]) == pytest.approx(1.0)
  table = np.array([[7 - 0.25 * s for s in SCORES]] * 3)
  assert effects.trend_slope(table, SCORES) == pytest.approx(-0.25)
  assert effects.extreme_difference(table, SCORES) == pytest.approx(-0.75)


def test_the_bootstrap_interval_brackets_the_effect_and_excludes_zero_when_it_is_real():
  rng = np.random.default_rng(1)
  table = 7 - 0.3 * np.asarray(SCORES) + rng.normal(0, 0.5, (64, 5))
  low, high = effects.bootstrap_interval(effects.extreme_difference, table, SCORES, 0.95, 2000)
  assert low < effects.extreme_difference(table, SCORES) < high < 0
  constant = np.tile([1.0, 1.0, 0.5, 0.0, -0.5], (10, 1))
  assert effects.bootstrap_interval(
    effects.extreme_difference, constant, SCORES, 0.9, 200
  ) == pytest.approx((effects.extreme_difference(constant, SCORES),) * 2)


def test_newcombe_hybrid_interval_matches_his_worked_example():
  # Newcombe (1998), Stat. Med. 17:873, Table II example (a): 56/70 - 48/80, method 10.
  result = effects.newcombe_interval(56, 70, 48, 80)
  assert result["difference"] == pytest.approx(0.2)
  assert result["interval"] == pytest.approx([0.0524, 0.3339], abs=1e-4)
  # Equal proportions: an interval symmetric about 0.
  low, high = effects.newcombe_interval(10, 20, 10, 20)["interval"]
  assert low == pytest.approx(-high) and low < 0 < high


def test_holm_adjusts_step_down_and_stays_monotone():
  adjusted = effects.holm({"a": 0.01, "b": 0.04, "c": 0.03})
  assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
  assert effects.holm({"a": 0.6, "b": 0.7}) == pytest.approx({"a": 1.0, "b": 1.0})


def test_power_reproduces_the_preregistered_figure():
  # docs/preregistration/sampling_order.md: 64 seeds, extreme difference 0.5 sd, one-sided
  # alpha 0.05 / 6: z = (0.5 / 3) * sqrt(64 * 6.8) - 2.394 = 1.083, power 0.86.
  assert effects._normal_quantile(0.975) == pytest.approx(1.959964, abs=1e-6)
  power = effects.trend_power(0.5, 1.0, 64, SCORES, 0.05 / 6)
  z = (0.5 / 3) * math.sqrt(64 * 6.8) - effects._normal_quantile(1 - 0.05 / 6)
  assert power == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))))
  assert power == pytest.approx(0.86, abs=0.005)
  assert effects.trend_power(0.1, 1.0, 8, SCORES, 0.05 / 6) < 0.1


def test_residual_sd_is_zero_for_an_additive_table_and_bad_tables_are_refused():
  additive = np.add.outer(np.arange(6.0), np.asarray(SCORES, float))
  assert effects.residual_sd(additive) == pytest.approx(0.0, abs=1e-12)
  with pytest.raises(ValueError, match=r"\[seeds, orders\]"):
    effects.trend_slope([[1, 2, 3]], [0, 1])
  with pytest.raises(ValueError, match="NaN"):
    effects.trend_slope([[1, float("nan")]], [0, 1])
  with pytest.raises(ValueError, match="scores are all equal"):
    effects.trend_slope([[1, 2]], [1, 1])
