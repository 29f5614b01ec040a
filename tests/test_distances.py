"""The sliced 1-Wasserstein distance (jgen/evals/distances.py) and its named evaluator."""

import jax
import numpy as np
import pytest

from jgen.data import mixtures
from jgen.datasets import evaluators
from jgen.datasets.mixture import MixtureData
from jgen.evals import distances


def test_a_shift_by_c_is_at_2c_over_pi_and_a_set_is_at_0_from_itself_in_any_order():
  x = np.random.default_rng(0).normal(size=(1000, 2))
  # W1 along direction t of a shift by (c, 0) is |c cos t|; its mean over [0, pi) is 2c/pi.
  assert distances.sliced_w1(x, x + np.array([3.0, 0.0])) == pytest.approx(6 / np.pi, rel=1e-3)
  assert distances.sliced_w1(x, x[::-1]) == 0.0
  # Unequal sizes compare quantiles: a set and itself repeated are the same distribution.
  assert distances.sliced_w1(x, np.concatenate([x, x])) == pytest.approx(0.0, abs=1e-12)


def test_the_distance_grows_as_modes_are_dropped():
  mixture = mixtures.get_mixture("ring8")
  reference = np.asarray(mixture.sample(jax.random.key(1), 4000))
  points = np.asarray(mixture.sample(jax.random.key(2), 4000))
  nearest = np.linalg.norm(points[:, None] - mixture.means_Kx2[None], axis=-1).argmin(axis=1)
  distances_by_kept = []
  for kept in (8, 6, 4, 2, 1):
    inside = points[nearest < kept]
    distances_by_kept.append(distances.sliced_w1(inside, reference))
  assert distances_by_kept == sorted(distances_by_kept), distances_by_kept
  # Two draws of the mixture lie far closer than one that keeps 6 of 8 modes.
  assert distances_by_kept[0] < distances_by_kept[1] / 3, distances_by_kept


def test_bad_input_is_refused_or_scored_nan():
  with pytest.raises(ValueError, match=r"two nonempty \[n, d\] point sets"):
    distances.sliced_w1(np.zeros((0, 2)), np.zeros((3, 2)))
  with pytest.raises(ValueError, match="evenly in 2D; got 3-dimensional"):
    distances.sliced_w1(np.zeros((3, 3)), np.zeros((3, 3)))
  assert np.isnan(distances.sliced_w1(np.full((3, 2), np.nan), np.zeros((3, 2))))


def test_the_evaluator_scores_against_fixed_draws_of_the_mixture():
  (evaluator,) = evaluators.parse({"sw": {"type": "sliced_w1", "every": 1, "num_samples": 500}})
  data = MixtureData(mixtures.get_mixture("grid25"))
  same = evaluators.reference_draws(data, 500)
  np.testing.assert_array_equal(same, evaluators.reference_draws(data, 500))
  assert evaluator.score(data, same, None, None) == {"sw/sliced_w1": 0.0}
  far = evaluator.score(data, same + 1.0, None, None)["sw/sliced_w1"]
  assert far == pytest.approx(distances.sliced_w1(same + 1.0, same))
  assert far > 0.5


@pytest.mark.parametrize("n, count", [(2500, 2500), (100, 2500), (2500, 100), (7, 13), (1, 5)])
def test_the_quantiles_are_numpys_inverted_cdf_read_off_one_sort(n, count):
  values = np.random.default_rng(n + count).normal(size=(n, 9))
  levels = (np.arange(count) + 0.5) / count
  expected = np.quantile(values, levels, axis=0, method="inverted_cdf")
  assert np.array_equal(distances._quantiles(values, count), expected)
