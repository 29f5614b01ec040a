"""The optimizer study's numbers on hand-made tables (jgen/studies/sensitivity.py) and its grid:
best rate, bracketing, basin width, spread across optimizers, widening past an edge."""

import itertools
import math

import pytest

from configs import study_optimizer
from jgen.studies import optimizer_sensitivity as study
from jgen.studies import sensitivity


def table(endpoints: dict[float, list[float] | None]) -> list[dict]:
  """by_rate entries: {lr: the seeds' sliced W1} (None: the rate diverged)."""
  return [
    {
      "lr": lr,
      "diverged": values is None,
      "seeds": [] if values is None else [{"sliced_w1": v} for v in values],
    }
    for lr, values in endpoints.items()
  ]


ADAM = table({1e-4: [0.9, 1.1], 1e-3: [0.3, 0.5], 1e-2: [0.1, 0.1], 1e-1: [0.12, 0.16], 1: None})
SGD = table({1e-3: [1.0, 1.0], 1e-2: [0.5, 0.7], 1e-1: [0.4, 0.4], 1: [0.3, 0.3]})


def test_the_best_rate_is_the_lowest_mean_and_bracketed_only_inside_the_grid():
  top = sensitivity.best(ADAM)
  assert (top["lr"], top["bracketed"]) == (1e-2, True)
  assert top["endpoint"] == pytest.approx(0.1)
  edge = sensitivity.best(SGD)  # still falling at the largest rate
  assert (edge["lr"], edge["bracketed"]) == (1, False)


def test_a_diverged_rate_is_infinitely_far_and_never_best():
  assert sensitivity.rate_endpoint(ADAM[-1]) == math.inf
  only_diverged = table({1e-3: None, 1e-2: None})
  assert sensitivity.basin(only_diverged, 0.5) == {"low": None, "high": None, "decades": 0.0}


def test_the_basin_is_the_contiguous_run_within_the_tolerance():
  # best 0.1: within 1.5 x: 1e-2 and 1e-1 (0.14); 1e-3 (0.4) is out; so one decade.
  assert sensitivity.basin(ADAM, 0.5) == {"low": 1e-2, "high": 1e-1, "decades": pytest.approx(1)}
  # a loose tolerance takes in 1e-3 too (0.4 <= 0.1 x 5), but never the diverged rate
  wide = sensitivity.basin(ADAM, 4.0)
  assert (wide["low"], wide["high"], wide["decades"]) == (1e-3, 1e-1, pytest.approx(2))
  # a rate within the tolerance beyond a rate outside it is not in the basin
  gapped = table({1e-3: [0.1], 1e-2: [1.0], 1e-1: [0.11]})
  assert sensitivity.basin(gapped, 0.5)["decades"] == 0.0
  with pytest.raises(ValueError, match="tolerance must be >= 0"):
    sensitivity.basin(ADAM, -1)


def test_the_spread_is_max_minus_min_of_each_optimizers_best():
  result = sensitivity.family_sensitivity({"adam": ADAM, "sgd": SGD}, 0.5)
  assert result["spread"] == pytest.approx(0.3 - 0.1)
  assert result["ratio"] == pytest.approx(3.0)
  assert result["every_optimum_bracketed"] is False  # sgd's best is on the edge
  assert result["optimizers"]["sgd"]["basin"]["decades"] == pytest.approx(1)  # 0.4 <= 0.45
  never = sensitivity.family_sensitivity({"adam": ADAM, "sgd": table({1: None})}, 0.5)
  assert never["spread"] is None


def test_the_spread_interval_resamples_paired_seeds_and_holds_the_spread():
  result = sensitivity.family_sensitivity({"adam": ADAM, "sgd": SGD}, 0.5)
  low, high = result["spread_95"]
  # seed 0 alone: bests 0.1 (adam) and 0.3 (sgd); seed 1 alone: 0.1 and 0.3: every resample
  # of the paired seeds keeps the spread within [0.2 - 0.02, 0.2 + 0.02]
  assert low <= result["spread"] <= high
  assert 0.17 <= low and high <= 0.23
  # seeds that disagree widen it
  noisy = table({1e-2: [0.1, 0.5], 1e-1: [0.3, 0.3], 1: [0.9, 0.9]})
  wide = sensitivity.spread_interval({"adam": noisy, "sgd": SGD}, resamples=500)
  assert wide[1] - wide[0] > 0.1
  unequal = table({1e-2: [0.1], 1e-1: [0.3, 0.3]})
  assert sensitivity.spread_interval({"adam": unequal, "sgd": SGD}) is None


def test_widening_extends_past_the_edge_that_holds_the_best_rate_at_the_grids_spacing():
  assert sensitivity.next_rates([1e-3, 1e-2, 1e-1], 1, 2) == []
  up = sensitivity.next_rates([1e-3, 1e-2, 1e-1], 2, 2)
  assert up == pytest.approx([1.0, 10.0])
  down = sensitivity.next_rates([1e-3, 1e-2, 1e-1], 0, 1)
  assert down == pytest.approx([1e-4])


def test_the_grid_has_seven_log_spaced_rates_over_three_decades_around_the_centre():
  config = study_optimizer.get_config()
  factors = study.grid_multipliers(config)
  assert len(factors) == 7
  assert math.log10(factors[-1] / factors[0]) == pytest.approx(3.0)
  assert math.log10(factors[3]) == pytest.approx(0.0)
  steps = {math.log10(b / a) for a, b in itertools.pairwise(factors)}
  assert max(steps) - min(steps) < 1e-9
  with pytest.raises(ValueError, match=r"study\.lr_points"):
    study.grid_multipliers(_with(config, lr_points=1))


def _with(config, **study_values):
  changed = config.copy_and_resolve_references()
  with changed.unlocked():
    for key, value in study_values.items():
      changed.study[key] = value
  return changed


def test_a_cell_widens_until_its_best_rate_is_bracketed(monkeypatch):
  # Endpoints fall towards a rate of 3 (far above the grid's top): the cell widens upwards,
  # round after round, until the budget of rounds is spent or the optimum is inside.
  trained = []

  def fake_train_rates(config, cell, rates, cell_dir):
    trained.append(sorted(rates))
    return [
      {"lr": r, "diverged": False, "seeds": [{"sliced_w1": 0.1 + abs(math.log10(r / 3.0))}]}
      for r in rates
    ]

  monkeypatch.setattr(study, "train_rates", fake_train_rates)
  config = study_optimizer.get_config()
  cell = {"family": "flow_matching", "optimizer": "adam", "data": "ring8"}
  outcome = study.train_cell(config, cell, "unused")
  assert outcome["widened"] == 2  # the default budget of rounds, spent
  rates = [entry["lr"] for entry in outcome["by_rate"]]
  assert rates == sorted(rates) and len(rates) == 7 + 2 + 2
  assert max(rates) == pytest.approx(1e-3 * 10 ** (1.5 + 2.0))  # four half-decades past the top
  # with more rounds, it stops as soon as the best is inside
  outcome = study.train_cell(_with(config, widen_rounds=5), cell, "unused")
  assert sensitivity.best(outcome["by_rate"])["bracketed"]
  assert outcome["widened"] == 3


def test_flattening_reads_the_fall_over_the_last_part_of_the_run():
  assert sensitivity.flattening([[0, 1.0], [500, 0.4], [600, 0.2], [1000, 0.2]]) == 0.0
  assert sensitivity.flattening([[0, 1.0], [600, 0.4], [1000, 0.2]]) == pytest.approx(1.0)
  assert sensitivity.flattening([]) is None
