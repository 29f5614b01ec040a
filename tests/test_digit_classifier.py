"""The mode classifier of Stacked digits: accuracy bar, cache, pure functions."""

import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jgen.data import digits
from jgen.evals import digit_classifier as classifier_lib


def test_digits_are_sklearn_digits_over_16():
  images, labels = digits.load_digits()
  assert images.shape == (1797, 8, 8, 1) and images.dtype == np.float32
  assert labels.shape == (1797,) and labels.dtype == np.int32
  assert images.min() == 0.0 and images.max() == 1.0
  assert sorted(set(labels.tolist())) == list(range(10))
  from sklearn import datasets

  np.testing.assert_array_equal(images[..., 0] * 16, datasets.load_digits().images)


def test_held_out_accuracy_reaches_the_bar(digit_classifier):
  assert digit_classifier.accuracy >= classifier_lib.MIN_ACCURACY
  # Recompute it from the cached weights on the held-out split: the cache is not trusted blindly.
  images, labels = digits.load_digits()
  _, held = digits.split(len(labels), classifier_lib.CONFIG["held_out_fraction"], 0)
  accuracy = float(np.mean(np.asarray(digit_classifier.predict(images[held])) == labels[held]))
  assert accuracy == pytest.approx(digit_classifier.accuracy, abs=1e-6)


def test_logits_and_features_are_pure_and_jittable(digit_classifier):
  images, _ = digits.load_digits()
  x = jnp.asarray(images[:16])
  logits = jax.jit(digit_classifier.logits)(x)
  features = jax.jit(digit_classifier.features)(x)
  assert logits.shape == (16, 10) and features.shape == (16, digit_classifier.feature_dim)
  np.testing.assert_allclose(digit_classifier.logits(x), logits, rtol=1e-5, atol=1e-5)


def _refuse_training(*args, **kwargs):
  raise AssertionError("the classifier was trained: its cache was not read")


def test_cache_is_reused_and_keyed_by_config(digit_classifier, tmp_path, monkeypatch):
  # The session's classifier came from the cache file named by its key.
  assert classifier_lib.cache_key() in digit_classifier.cache_path
  changed = dict(classifier_lib.CONFIG, epochs=classifier_lib.CONFIG["epochs"] + 1)
  assert classifier_lib.cache_key(changed) != classifier_lib.cache_key()
  # Training is deterministic, so equal weights alone cannot tell a cache hit from a retrain:
  # training is made to fail, and a copy of the cache holds sentinel weights and accuracy that
  # training would never produce. Only reading the cache can give them back.
  monkeypatch.setattr(classifier_lib, "train", _refuse_training)
  with pytest.raises(AssertionError, match="was trained"):
    classifier_lib.load_digit_classifier(cache_dir=str(tmp_path / "empty"))
  name = os.path.basename(digit_classifier.cache_path)
  sentinel_params = jax.tree.map(lambda x: np.asarray(x) + 0.5, digit_classifier.params)
  (tmp_path / name).write_bytes(flax.serialization.to_bytes(sentinel_params))
  info = json.loads(open(digit_classifier.cache_path.removesuffix(".msgpack") + ".json").read())
  sentinel_accuracy = 0.987654321
  (tmp_path / name.replace(".msgpack", ".json")).write_text(
    json.dumps({**info, "held_out_accuracy": sentinel_accuracy})
  )
  again = classifier_lib.load_digit_classifier(cache_dir=str(tmp_path))
  assert again.cache_path == str(tmp_path / name)
  assert again.accuracy == sentinel_accuracy
  leaves = zip(jax.tree.leaves(again.params), jax.tree.leaves(sentinel_params), strict=True)
  assert all(np.array_equal(a, b) for a, b in leaves)


def test_the_shipped_weights_are_read_and_match_the_recipe(tmp_path, monkeypatch):
  # With no cache directory named, a machine with an empty cache reads the weights that ship
  # with jgen: nothing is trained and nothing is written.
  monkeypatch.setenv(classifier_lib.CACHE_ENV, str(tmp_path))
  monkeypatch.setattr(classifier_lib, "train", _refuse_training)
  shipped = classifier_lib.load_digit_classifier()
  assert os.path.dirname(shipped.cache_path) == classifier_lib.SHIPPED_DIR
  assert classifier_lib.is_cached() and list(tmp_path.iterdir()) == []
  # They are the current recipe's: its key names the file and its record.
  info = json.loads(open(shipped.cache_path.removesuffix(".msgpack") + ".json").read())
  assert info["key"] == classifier_lib.cache_key()
  assert info["config"] == json.loads(json.dumps(classifier_lib.CONFIG))
  # A cache directory named explicitly is its own: the shipped file does not stand in for it.
  with pytest.raises(AssertionError, match="was trained"):
    classifier_lib.load_digit_classifier(cache_dir=str(tmp_path / "named"))
