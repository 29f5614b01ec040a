"""Priors over learned codes (jgen/evals/code_priors.py) and the memorization rate
(jgen/evals/memorization.py), on hand-made codes and images whose answers are known."""

import numpy as np
import pytest

from jgen.core import registry
from jgen.evals import code_priors, latents, memorization


def test_gaussian_prior_recovers_mean_and_covariance():
  mu = np.array([1.0, -2.0, 3.0])
  sigma = np.array([[2.0, 1.2, -0.6], [1.2, 1.5, 0.3], [-0.6, 0.3, 1.0]])
  codes = np.random.default_rng(0).multivariate_normal(mu, sigma, size=2000)
  samples = code_priors.sample_codes("gaussian", codes, 4000, seed=1).astype(np.float64)
  assert samples.shape == (4000, 3)
  # Error of the fitted moments (2000 codes) plus that of the samples' moments (4000 draws).
  n_eff = 1 / (1 / 2000 + 1 / 4000)
  mean_se = np.sqrt(np.diag(sigma) / n_eff)
  np.testing.assert_array_less(np.abs(samples.mean(0) - mu), 5 * mean_se)
  variances = np.diag(sigma)
  cov_se = np.sqrt((np.outer(variances, variances) + sigma**2) / n_eff)
  np.testing.assert_array_less(np.abs(np.cov(samples.T) - sigma), 5 * cov_se)


def test_gmm_prior_samples_both_clusters_in_proportion():
  rng = np.random.default_rng(0)
  centres = np.array([[-10.0, -10.0, -10.0], [10.0, 10.0, 10.0]])
  labels = rng.random(2000) < 0.3  # 30% in the first cluster
  codes = np.where(labels[:, None], centres[0], centres[1]) + 0.5 * rng.normal(size=(2000, 3))
  samples = code_priors.sample_codes("gmm", codes, 2000, seed=3, components=2)
  distances = np.linalg.norm(samples[:, None, :] - centres[None], axis=-1)
  assert np.all(distances.min(axis=1) < 3.0), "a sample fell between the clusters"
  in_first = np.mean(distances.argmin(axis=1) == 0)
  assert abs(in_first - 0.3) < 0.05, in_first


def _simplex_clusters(num_clusters=5):
  """Triangles 100 apart: a code's 2 nearest other codes are its own triangle's corners."""
  triangle = np.array([[0.0, 0.0], [1.0, 0.0], [0.3, 0.8]])
  offsets = 100.0 * np.stack([np.arange(num_clusters), np.zeros(num_clusters)], axis=1)
  return (offsets[:, None, :] + triangle[None]).reshape(-1, 2), offsets


def test_knn_convex_samples_lie_in_the_hull_of_their_neighbourhood():
  codes, offsets = _simplex_clusters()
  samples = code_priors.knn_convex(codes, 3000, k=2, seed=0).astype(np.float64)
  cluster = np.argmin(np.linalg.norm(samples[:, None] - offsets[None], axis=-1), axis=1)
  corners = codes.reshape(len(offsets), 3, 2)[cluster]  # [S, 3, 2]
  # Barycentric weights w (sum 1) with corners^T w = sample: unique for a triangle.
  system = np.concatenate([np.swapaxes(corners, 1, 2), np.ones((len(samples), 1, 3))], axis=1)
  rhs = np.concatenate([samples, np.ones((len(samples), 1))], axis=1)
  weights = np.linalg.solve(system, rhs[..., None])[..., 0]
  assert np.all(weights > -1e-5), "a sample left its triangle"
  # Dirichlet(1, 1, 1) over all three corners: each weight is Beta(1, 2) (mean 1/3, variance
  # 1/18: a more concentrated Dirichlet has less), and all three exceed 0.01 with probability
  # (1 - 0.03)^2 = 0.94. Mixing the anchor with only some of its neighbours would put a zero
  # weight on every sample.
  np.testing.assert_allclose(weights.mean(axis=0), 1 / 3, atol=0.03)
  np.testing.assert_allclose(weights.var(axis=0), 1 / 18, rtol=0.15)
  assert np.mean(weights.min(axis=1) > 0.01) > 0.9
  # Every cluster is used: anchors are drawn over all codes.
  assert set(cluster) == set(range(len(offsets)))


def test_knn_convex_stays_in_the_codes_bounding_box_and_is_seeded():
  codes = np.random.default_rng(0).normal(size=(200, 4))
  samples = code_priors.knn_convex(codes, 500, k=6, seed=7)
  assert samples.shape == (500, 4) and samples.dtype == np.float32
  assert np.all(samples >= codes.min(0) - 1e-5) and np.all(samples <= codes.max(0) + 1e-5)
  np.testing.assert_array_equal(samples, code_priors.knn_convex(codes, 500, k=6, seed=7))
  assert not np.allclose(samples, code_priors.knn_convex(codes, 500, k=6, seed=8))


def test_knn_convex_on_a_line_mixes_only_neighbours():
  # Codes 0, 10, 20, ... on a line with k = 1: a sample lies between an anchor and its nearest
  # other code, so never more than 10 from a code; a sample mixing far codes would.
  codes = 10.0 * np.arange(20.0)[:, None]
  samples = code_priors.knn_convex(codes, 1000, k=1, seed=0)[:, 0]
  assert np.all((samples >= 0) & (samples <= 190))
  gaps = np.abs(samples[:, None] - codes[None, :, 0]).min(axis=1)
  assert np.all(gaps <= 5.0 + 1e-4)


@pytest.mark.parametrize("k", [0, 10, 11])
def test_knn_convex_rejects_k_outside_1_to_n_minus_1(k):
  codes = np.zeros((10, 2)) + np.arange(10.0)[:, None]
  with pytest.raises(ValueError, match=r"1 <= k < number of codes \(10\)"):
    code_priors.knn_convex(codes, 5, k=k, seed=0)


def test_slerp_pairs_stay_on_the_sphere():
  directions = np.random.default_rng(0).normal(size=(50, 5))
  codes = 2.0 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
  samples = code_priors.slerp_pairs(codes, 1000, seed=0)
  np.testing.assert_allclose(np.linalg.norm(samples, axis=1), 2.0, rtol=1e-5)
  np.testing.assert_array_equal(samples, code_priors.slerp_pairs(codes, 1000, seed=0))
  # lerp would cut the chord, inside the sphere.
  assert not np.allclose(np.linalg.norm(latents.lerp(codes[0], codes[1], 0.5)), 2.0)


def test_slerp_pairs_walk_the_arc_between_two_distinct_codes():
  # Two codes at 0 and 90 degrees: every sample is on the quarter arc between them (i != j;
  # t in (0, 1)), with its angle uniform there as t is.
  codes = np.array([[1.0, 0.0], [0.0, 1.0]])
  samples = code_priors.slerp_pairs(codes, 2000, seed=0).astype(np.float64)
  angles = np.degrees(np.arctan2(samples[:, 1], samples[:, 0]))
  assert np.all((angles > 0) & (angles < 90))
  assert abs(angles.mean() - 45.0) < 3.0
  np.testing.assert_allclose(np.linalg.norm(samples, axis=1), 1.0, rtol=1e-6)


def test_vectorized_slerp_matches_the_per_pair_formula():
  rng = np.random.default_rng(0)
  z0, z1, t = rng.normal(size=(8, 3)), rng.normal(size=(8, 3)), rng.random(8)
  for a, b, s, batched in zip(z0, z1, t, latents.slerp(z0, z1, t), strict=True):
    omega = np.arccos(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))
    expected = (np.sin((1 - s) * omega) * a + np.sin(s * omega) * b) / np.sin(omega)
    np.testing.assert_allclose(batched, expected, rtol=1e-12)
    np.testing.assert_allclose(latents.slerp(a, b, s), expected, rtol=1e-12)


def test_sample_codes_dispatches_and_names_the_valid_priors():
  codes = np.random.default_rng(0).normal(size=(30, 3))
  np.testing.assert_array_equal(
    code_priors.sample_codes("knn", codes, 10, seed=2, k=3),
    code_priors.knn_convex(codes, 10, k=3, seed=2),
  )
  with pytest.raises(registry.UnknownNameError, match="valid choices: gaussian, gmm, knn, slerp"):
    code_priors.sample_codes("vae", codes, 10, seed=0)
  with pytest.raises(ValueError, match="'slerp' does not take k; it takes no options"):
    code_priors.sample_codes("slerp", codes, 10, seed=0, k=3)


# The memorization rate.


def _line_images(values):
  """1-value images (shape [1, 1]) at the given positions on a line."""
  return np.asarray(values, np.float64).reshape(-1, 1, 1)


def test_exact_copies_count_and_far_samples_do_not():
  train = np.random.default_rng(0).random((50, 8, 8, 1))
  copies = memorization.memorization_rate(train[[3, 3, 17, 40]], train, return_ratios=True)
  assert copies["rate"] == 1.0 and copies["median_ratio"] == 0.0
  np.testing.assert_array_equal(copies["ratios"], 0.0)
  far = memorization.memorization_rate(train + 100.0, train)
  assert far["rate"] == 0.0 and far["median_ratio"] > 10
  assert "ratios" not in far


def test_ratio_just_below_at_and_just_above_the_threshold():
  # Training images at 0, 10, 30: r = 10, 10, 20.
  train = _line_images([0.0, 10.0, 30.0])
  samples = _line_images([-4.9, -5.0, -5.1, 39.9, 40.1])
  result = memorization.memorization_rate(samples, train, return_ratios=True)
  np.testing.assert_allclose(result["ratios"], [0.49, 0.5, 0.51, 0.495, 0.505])
  # Strictly below the threshold: the sample at exactly 0.5 is not a copy.
  assert result["rate"] == pytest.approx(2 / 5)
  assert memorization.memorization_rate(samples, train, threshold=0.6)["rate"] == 1.0


def test_duplicate_training_images_use_the_nearest_distinct_image():
  # 0 appears twice: its spacing is 10 (to the image at 10), not 0.
  train = _line_images([0.0, 0.0, 10.0])
  samples = _line_images([0.0, 4.0, -6.0])
  result = memorization.memorization_rate(samples, train, return_ratios=True)
  np.testing.assert_allclose(result["ratios"], [0.0, 0.4, 0.6])
  assert result["rate"] == pytest.approx(2 / 3)


def _brute_force_ratios(samples, train) -> np.ndarray:
  """The ratio of the definition, by explicit loops over distinct training images."""
  distinct = np.unique(train.reshape(len(train), -1), axis=0)
  pairwise = np.linalg.norm(distinct[:, None] - distinct[None], axis=-1)
  np.fill_diagonal(pairwise, np.inf)
  spacing = pairwise.min(axis=1)
  to_train = np.linalg.norm(samples.reshape(len(samples), -1)[:, None] - distinct[None], axis=-1)
  nearest = to_train.argmin(axis=1)
  return to_train[np.arange(len(samples)), nearest] / spacing[nearest]


def test_one_spacing_scores_many_sample_sets_as_the_definition_does():
  rng = np.random.default_rng(1)
  train = rng.random((60, 4, 4, 1))
  spacing = memorization.TrainingSpacing(train)
  for samples in (train[:7] + 1e-3, rng.random((30, 4, 4, 1)), train[[5, 5, 9]]):
    shared = spacing.rate(samples, return_ratios=True)
    np.testing.assert_allclose(shared["ratios"], _brute_force_ratios(samples, train), rtol=1e-12)
    alone = memorization.memorization_rate(samples, train, return_ratios=True)
    np.testing.assert_array_equal(shared["ratios"], alone["ratios"])
  with pytest.raises(ValueError, match=r"samples have 32 values per image.*train_images have 16"):
    spacing.rate(rng.random((3, 4, 4, 2)))


def test_memorization_is_the_same_in_blocks_as_in_one_piece(monkeypatch):
  rng = np.random.default_rng(0)
  train, samples = rng.random((40, 3, 2)), rng.random((90, 3, 2))
  whole = memorization.memorization_rate(samples, train, return_ratios=True)["ratios"]
  monkeypatch.setattr(memorization, "_BLOCK_ENTRIES", 100)  # 2 rows per block
  blocked = memorization.memorization_rate(samples, train, return_ratios=True)["ratios"]
  np.testing.assert_allclose(blocked, whole, rtol=1e-12)
  flat_s, flat_t = samples.reshape(90, -1), train.reshape(40, -1)
  d = np.linalg.norm(flat_s[:, None] - flat_t[None], axis=-1)
  dt = np.linalg.norm(flat_t[:, None] - flat_t[None], axis=-1) + np.diag(np.full(40, np.inf))
  np.testing.assert_allclose(whole, d.min(1) / dt.min(1)[d.argmin(1)], rtol=1e-12)


@pytest.mark.parametrize(
  "samples, train, threshold, message",
  [
    (np.zeros((3, 4)), np.zeros((1, 4)), 0.5, "need at least 2 training images"),
    (np.zeros((3, 4)), np.ones((5, 4)), 0.5, "they are all identical"),
    (np.zeros((3, 2, 2)), np.eye(5)[:, :3], 0.5, "4 values per image .* train_images have 3"),
    (np.zeros((0, 3)), np.eye(3), 0.5, "samples is empty"),
    (np.zeros(3), np.eye(3), 0.5, "samples must have a leading batch axis"),
    (np.full((2, 3), np.nan), np.eye(3), 0.5, "samples contain NaN"),
    (np.zeros((2, 3)), np.eye(3), 0.0, "threshold must be a positive"),
  ],
)
def test_memorization_rejects_bad_input(samples, train, threshold, message):
  with pytest.raises(ValueError, match=message):
    memorization.memorization_rate(samples, train, threshold=threshold)


# The learned prior: flow matching on the code table (jgen/trainers/code_flow.py).


def test_a_flow_trained_on_codes_returns_codes_near_them(tmp_path):
  from configs import dgn as dgn_config
  from configs import flow as flow_config
  from jgen.trainers import code_flow

  rng = np.random.default_rng(0)
  centres = np.array([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]])
  codes = centres[rng.integers(0, 2, 200)] + 0.1 * rng.normal(size=(200, 3))
  flow = flow_config.get_config("runlocal")
  flow.model.width = 64
  flow.train.num_steps = 600
  dgn = dgn_config.get_config("runlocal")
  drawn = code_flow.sample_codes(flow, codes, str(tmp_path), dgn, 400)
  assert drawn.shape == (400, 3) and drawn.dtype == np.float32
  nearest_centre = np.linalg.norm(drawn[:, None] - centres[None], axis=-1).min(axis=1)
  assert np.median(nearest_centre) < 0.5  # on the clusters, not between them at the origin
  sides = (drawn[:, 0] > 0).mean()
  assert 0.25 < sides < 0.75  # both clusters
  # a second call resumes the finished run and draws the same codes
  again = code_flow.sample_codes(flow, codes, str(tmp_path), dgn, 400)
  assert np.array_equal(drawn, again)


def test_a_code_table_dataset_refuses_what_it_cannot_read(tmp_path):
  from ml_collections import ConfigDict

  from jgen.datasets import codes as codes_data

  with pytest.raises(ValueError, match=r"data\.path"):
    codes_data.CodesData.from_config(ConfigDict({"path": str(tmp_path / "no.npy"), "num_train": 3}))
  np.save(tmp_path / "c.npy", np.zeros((4, 2), np.float32))
  with pytest.raises(ValueError, match="must equal the 4 codes"):
    codes_data.CodesData.from_config(ConfigDict({"path": str(tmp_path / "c.npy"), "num_train": 3}))
