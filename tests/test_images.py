"""Images: stacked digits, conv set discriminators, image metrics, the image GAN configs."""

import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import stacked_digits_gan, stacked_digits_setd
from jgen import models
from jgen.data import digits, stacked
from jgen.data import reference as reference_lib
from jgen.evals import birthday, features, from_files, images
from jgen.trainers import gan as gan_trainer
from jgen.trainers import gan_step

DATA = stacked.stacked_digits()


@pytest.fixture(scope="module")
def reference():
  """The 26,000 real images every evaluation compares with (fixed key)."""
  return reference_lib.reference_images(DATA, stacked.PROTOCOL_NUM_SAMPLES)


def test_training_set_has_exactly_1000_modes_and_gathers_digit_triples():
  data = DATA.training_set(jax.random.key(0), stacked.PROTOCOL_NUM_TRAIN)
  triples = np.asarray(data["triples"])
  assert triples.shape == (128_000, 3) and triples.dtype == np.int32
  modes = np.asarray(stacked.mode_of_labels(jnp.asarray(DATA.labels_N[triples])))
  assert len(np.unique(modes)) == 1000
  x = np.asarray(DATA.gather(data, jnp.array([5, 77])))
  assert x.shape == (2, 8, 8, 3)
  images_, _ = digits.load_digits()
  for row, triple in zip(x, triples[[5, 77]], strict=True):
    for c in range(3):
      np.testing.assert_array_equal(row[..., c], images_[triple[c], ..., 0])


def test_mode_distribution_is_the_product_of_class_frequencies():
  p = DATA.mode_distribution()
  assert p.shape == (1000,) and p.sum() == pytest.approx(1.0)
  class_p = np.bincount(DATA.labels_N) / len(DATA.labels_N)
  assert p[123] == pytest.approx(class_p[1] * class_p[2] * class_p[3])


def test_real_data_as_samples_captures_all_modes_with_kl_near_zero(reference, digit_classifier):
  labels, _ = images.classify_channels(digit_classifier, reference)
  row = images.mode_metrics(labels, DATA.mode_distribution())
  assert row["modes"] >= 995
  assert row["kl"] < 0.05
  # One digit triple repeated: one mode, KL = -log p_data(mode) (about log 1000).
  one = images.mode_metrics(np.tile(labels[:1], (500, 1)), DATA.mode_distribution())
  assert one["modes"] == 1
  assert one["kl"] == pytest.approx(
    -math.log(DATA.mode_distribution()[one["mode_counts"].index(500)])
  )


def _gaussian(n, dim=16, seed=0, shift=0.0):
  return np.random.default_rng(seed).normal(size=(n, dim)) + shift


def test_fid_is_zero_on_identical_sets_and_grows_with_a_perturbation():
  x = _gaussian(2000)
  assert features.fid(x, x) == pytest.approx(0.0, abs=1e-6)
  noise = _gaussian(2000, seed=1)
  fids = [features.fid(x, x + s * noise) for s in (0.1, 0.3, 1.0)]
  assert 0 < fids[0] < fids[1] < fids[2]
  # A mean shift of d in every one of 16 dims adds 16 d^2.
  assert features.fid(x, x + 0.5) == pytest.approx(16 * 0.25, rel=1e-6)


@pytest.mark.parametrize("sizes", [(5, 5), (3, 12), (12, 3), (40, 40)])
def test_fid_in_sample_space_equals_fid_in_feature_space(sizes):
  """Sets so small that N_r N_f <= F^2 take the sample-space route (features.fid): both
  routes give the same distance, and each route is the one taken at its sizes."""
  real = _gaussian(sizes[0], dim=8, seed=2)
  fake = 0.5 * _gaussian(sizes[1], dim=8, seed=3, shift=0.2)
  centred_r, centred_f = real - real.mean(0), fake - fake.mean(0)
  sample = features._fid_traces_in_sample_space(centred_r, centred_f)
  feature = features._fid_traces_in_feature_space(real, fake)
  # Not closer: where N < F the feature route takes the square roots of rank-deficient S_r S_f's
  # zero eigenvalues, computed as rounding noise (~1e-16), each adding ~1e-8.
  np.testing.assert_allclose(sample, feature, rtol=1e-7)
  taken = sample if sizes[0] * sizes[1] <= 64 else feature
  shift = np.sum((real.mean(0) - fake.mean(0)) ** 2)
  # Exactly: the routes differ in the last digits (above), so only the route taken matches.
  assert features.fid(real, fake) == float(shift + taken[0] + taken[1] - 2 * taken[2])
  assert features.fid(real, real) == pytest.approx(0.0, abs=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
  same, _ = features.kid(_gaussian(2000), _gaussian(2000, seed=1), 500, 20)
  apart, _ = features.kid(_gaussian(2000), _gaussian(2000, seed=1, shift=1.0), 500, 20)
  assert abs(same) < 0.02 and apart > 10 * abs(same) and apart > 0.1


def test_precision_recall_density_coverage_on_identical_and_disjoint_sets():
  x = _gaussian(800)
  assert features.precision_recall(x, x) == (1.0, 1.0)
  density, coverage = features.density_coverage(x, x)
  # Each fake sits in its own real ball plus, on average, the k balls it is a k-NN of.
  assert coverage == 1.0 and density == pytest.approx((features.DC_K + 1) / features.DC_K)
  density, _ = features.density_coverage(x, _gaussian(800, seed=9))  # same law: ~1
  assert density == pytest.approx(1.0, abs=0.1)
  far = x + 100.0
  assert features.precision_recall(x, far) == (0.0, 0.0)
  assert features.density_coverage(x, far) == (0.0, 0.0)


def test_birthday_estimate_recovers_a_known_support_size():
  support = 2000
  points = _gaussian(support, seed=3)
  draws = points[np.random.default_rng(4).integers(0, support, 20_000)]
  rate = birthday.collision_rate(draws, 60, 400, threshold=1e-3)
  estimate = birthday.support_size(rate, 60, 400)
  assert support / 1.5 < estimate < support * 1.5


def test_birthday_batches_in_one_program_find_the_closest_pair_of_each_batch_loop():
  """Every batch's closest pair, as a loop over the batches computes it (each batch's distance
  matrix by features.chunked_squared_distances), bit for bit; so the same hits at any threshold,
  among them thresholds at exactly a batch's closest distance."""
  x = np.repeat(_gaussian(300, dim=32, seed=5).astype(np.float32), 2, axis=0)[:500]
  x[::7] += 1e-3  # near-duplicates among the exact ones
  rng = np.random.default_rng(6)
  picks = np.stack([rng.choice(len(x), 40, replace=False) for _ in range(50)])
  looped = []
  for indices in picks:
    d2 = features.chunked_squared_distances(x[indices], x[indices])
    np.fill_diagonal(d2, np.inf)
    looped.append(d2.min())
  closest = birthday._closest_squared_distance_per_batch(jnp.asarray(x), jnp.asarray(picks))
  np.testing.assert_array_equal(np.asarray(closest), np.asarray(looped, np.float32))
  assert len(set(looped)) > 3  # batches differ: some hold a duplicate, some a near one
  for threshold in (0.0, float(np.sqrt(np.median(looped))), 1e9):
    hits = sum(bool(d < threshold**2) for d in looped) / 50
    assert birthday.collision_rate(x, 40, 50, threshold, seed=6) == hits


@pytest.mark.parametrize("name", ["conv_deepsets", "conv_attention", "conv_mbstd"])
def test_conv_set_discriminators_are_permutation_invariant(name):
  config = stacked_digits_setd.get_config("runlocal")
  config.unlock()
  config.model.discriminator.name = name
  d = models.make_image_discriminator(config.model)
  x = jax.random.uniform(jax.random.key(0), (3, 4, 8, 8, 3))
  params = d.init(jax.random.key(1), x)
  permuted = x[:, jnp.array([2, 0, 3, 1])]
  np.testing.assert_allclose(d.apply(params, x), d.apply(params, permuted), rtol=1e-5, atol=1e-5)
  # ... and the sets stay independent: changing set 0 leaves the others' logits alone.
  changed = x.at[0].set(0.0)
  np.testing.assert_array_equal(d.apply(params, x)[1:], d.apply(params, changed)[1:])


def test_pack_discriminator_sees_order():
  config = stacked_digits_setd.get_config("runlocal")
  config.unlock()
  config.model.discriminator.name = "conv_pack"
  d = models.make_image_discriminator(config.model)
  x = jax.random.uniform(jax.random.key(0), (2, 4, 8, 8, 3))
  params = d.init(jax.random.key(1), x)
  assert not np.allclose(d.apply(params, x), d.apply(params, x[:, ::-1]))


def _tiny(module, **overrides):
  config = module.get_config("runlocal")
  config.unlock()
  config.data.num_train = 512
  config.train.num_steps = 8
  config.train.steps_per_dispatch = 4
  config.train.log_every = 4
  config.train.eval_every = 8
  config.train.checkpoint_every = 4
  config.eval.num_samples = 300
  config.eval.feature_samples = 200
  config.eval.kid_subset_size = 100
  config.eval.kid_subsets = 5
  config.eval.birthday_batch = 20
  config.eval.birthday_batches = 20
  # dotted paths, as on the command line; an unknown key raises, as there
  config.update_from_flattened_dict(overrides)
  return config


def test_per_sample_image_config_trains_and_logs_the_image_metrics(tmp_path, digit_classifier):
  first = gan_trainer.train_and_evaluate(_tiny(stacked_digits_gan), str(tmp_path / "a"))
  assert 0 <= first["modes"] <= 1000 and math.isfinite(first["kl"])
  for key in ("classifier_fid", "classifier_precision", "classifier_coverage", "diversity"):
    assert key in first
  assert (tmp_path / "a" / "samples" / "step_00000008.png").exists()
  rows = [json.loads(line) for line in open(tmp_path / "a" / "metrics.jsonl")]
  assert rows[-1]["modes"] == first["modes"] and rows[-1]["kl"] == first["kl"]


def test_set_d_image_config_is_deterministic_and_resumes_bit_identically(tmp_path):
  """A straight run and one stopped at step 4 and resumed: equal digests (so the run is also
  reproducible: the resumed one recomputed its first 4 steps in another process state)."""
  config = _tiny(stacked_digits_setd, **{"eval.feature_metrics": False})
  straight = gan_trainer.train_and_evaluate(config, str(tmp_path / "straight"))
  half = _tiny(stacked_digits_setd, **{"eval.feature_metrics": False, "train.num_steps": 4})
  gan_trainer.train_and_evaluate(half, str(tmp_path / "resumed"))
  resumed = gan_trainer.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert resumed["state_digest"] == straight["state_digest"]
  assert resumed["modes"] == straight["modes"]


def test_image_training_set_is_on_the_device_and_gathered_in_the_step():
  gan, root, data = gan_trainer.build(_tiny(stacked_digits_gan))
  assert set(data) == {"triples", "digits"} and data["triples"].shape == (512, 3)
  indices, real = gan_step.draw_real(gan, root, data, jnp.int32(3))
  np.testing.assert_array_equal(real, DATA.gather(data, indices))
  assert real.shape == (64, 8, 8, 3)


def test_per_sample_conv_discriminator_refuses_sets():
  config = _tiny(stacked_digits_gan, **{"model.set_size": 4})
  with pytest.raises(ValueError, match="set discriminator: conv_attention"):
    gan_trainer.Gan.from_config(config)


def test_unknown_data_lists_images_and_mixtures():
  config = _tiny(stacked_digits_gan, **{"data.name": "stacked_mnits"})
  with pytest.raises(ValueError, match="grid25, mnist, ring8, stacked_digits, stacked_mnist"):
    gan_trainer.Gan.from_config(config)


def test_evaluate_file_on_real_stacked_digits(tmp_path, reference, digit_classifier):
  # What `python -m jgen.evaluate --data=stacked_digits` prints, in process: the command's own
  # shell (one JSON row on stdout, a mistake as one line) is tests/test_tools_import.py's.
  path = tmp_path / "real.npy"
  np.save(path, reference[:3000])
  row, _ = from_files.evaluate_file("stacked_digits", str(path), note=lambda text: None)
  row = json.loads(json.dumps(row, allow_nan=False))
  assert row["num_modes_total"] == 1000 and row["modes"] > 900 and row["kl"] < 0.5
  assert "not Inception" in row["feature_space"]
  assert row["classifier_precision"] > 0.5 and row["classifier_recall"] > 0.5
  bad = tmp_path / "bad.npy"
  np.save(bad, np.zeros((4, 8, 8)))
  with pytest.raises(from_files.EvaluateError, match=r"\[n, 8, 8, 3\]"):
    from_files.evaluate_file("stacked_digits", str(bad))


def test_evaluate_row_matches_the_trainer_settings():
  config = stacked_digits_gan.get_config()
  for key, value in from_files.IMAGE_EVAL.items():
    assert config.eval[key] == value
  assert ml_collections.ConfigDict(from_files.IMAGE_EVAL).feature_samples == 5000
