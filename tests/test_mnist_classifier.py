"""The MNIST mode classifier and the modes of `mnist` / `stacked_mnist` runs, offline.

Real MNIST cannot be read here (it needs a download), so TFDS's `tfds.data_source` is mocked
with a stand-in that has MNIST's format: scikit-learn's digits drawn as MNIST draws its digits
(a 20x20 box centred in 28x28, uint8) with their true labels, split 1,438 train / 359 test. The
stand-in is 40 times smaller than MNIST, so its recipe trains for more epochs (12, a quarter of
the steps of one MNIST epoch); everything else is the MNIST recipe.
"""

import os

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from configs import stacked_digits_gan  # noqa: E402
from jgen import datasets  # noqa: E402
from jgen.data import digits, stacked, tfds_source  # noqa: E402
from jgen.evals import digit_classifier as classifier_lib  # noqa: E402
from jgen.evals import images  # noqa: E402
from jgen.trainers import gan as gan_trainer  # noqa: E402

# 12 epochs (132 steps) reach 0.981 on the stand-in's test split, above the 0.97 bar by 3 of its
# 359 digits; 25 epochs reach 0.992 in twice the time.
STAND_IN_RECIPE = dict(classifier_lib.MNIST_CONFIG, epochs=12)


def _as_mnist(image_8x8x1: np.ndarray) -> np.ndarray:
  grey = Image.fromarray(np.round(image_8x8x1[..., 0] * 255).astype(np.uint8))
  return np.pad(np.asarray(grey.resize((20, 20), Image.BILINEAR)), 4)[..., None]


@pytest.fixture(scope="module")
def mnist_stand_in(tmp_path_factory):
  """Inside: tfds.data_source("mnist") reads the stand-in; the MNIST recipe is the stand-in's;
  the classifier cache is a fresh directory."""
  images_8, labels = digits.load_digits()
  train_idx, held_idx = digits.split(len(labels), 0.2, 0)
  splits = {
    name: [{"image": _as_mnist(images_8[i]), "label": int(labels[i])} for i in idx]
    for name, idx in (("train", train_idx), ("test", held_idx))
  }

  def as_data_source(builder, split=None, **kwargs):
    del builder, kwargs
    return splits[str(split)]

  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(classifier_lib.RECIPES, "mnist", STAND_IN_RECIPE)
    patch.setenv(classifier_lib.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
      yield splits


@pytest.fixture(scope="module")
def mnist_classifier(mnist_stand_in):
  return classifier_lib.load_digit_classifier(data="mnist")


def _config(name, **overrides):
  config = stacked_digits_gan.get_config("runlocal")
  config.update_from_flattened_dict(
    {
      "data.name": name,
      "data.num_train": 64,
      "train.batch_size": 16,
      "train.num_steps": 4,
      "train.steps_per_dispatch": 2,
      "train.log_every": 2,
      "train.eval_every": 4,
      "train.checkpoint_every": 4,
      "eval.num_samples": 200,
      "eval.feature_samples": 100,
      "eval.kid_subset_size": 50,
      "eval.kid_subsets": 2,
      "eval.birthday_batch": 20,
      "eval.birthday_batches": 10,
      **overrides,
    }
  )
  return config


def test_mnist_classifier_trains_on_the_train_split_and_reaches_the_bar_on_test(
  mnist_stand_in, mnist_classifier, monkeypatch, tmp_path
):
  assert mnist_classifier.data == "mnist" and os.path.exists(mnist_classifier.cache_path)
  assert mnist_classifier.accuracy >= classifier_lib.MIN_ACCURACY
  # Recomputed from the cached weights on the test split, which training never saw.
  test = mnist_stand_in["test"]
  x = np.stack([r["image"] for r in test]).astype(np.float32) / 255.0
  y = np.asarray([r["label"] for r in test])
  accuracy = float(np.mean(np.asarray(mnist_classifier.predict(x)) == y))
  assert accuracy == pytest.approx(mnist_classifier.accuracy, abs=1e-6)
  # Keyed apart from the scikit-learn classifier, by recipe and by data.
  assert classifier_lib.cache_key(STAND_IN_RECIPE) != classifier_lib.cache_key()

  # Loading again reads the cache: the same weights, no training. Training is deterministic,
  # so equal weights alone would not tell a hit from a retrain; here a retrain raises.
  def refuse_training(*args, **kwargs):
    raise AssertionError("the classifier was trained: its cache was not read")

  monkeypatch.setattr(classifier_lib, "train", refuse_training)
  with pytest.raises(AssertionError, match="was trained"):
    classifier_lib.load_digit_classifier(data="mnist", cache_dir=str(tmp_path))
  again = classifier_lib.load_digit_classifier(data="mnist")
  assert again.cache_path == mnist_classifier.cache_path
  np.testing.assert_array_equal(again.predict(x[:50]), mnist_classifier.predict(x[:50]))


def test_an_undertrained_mnist_classifier_is_refused_with_its_accuracy(mnist_stand_in, tmp_path):
  weak = dict(STAND_IN_RECIPE, epochs=1)  # 11 steps
  with pytest.raises(
    RuntimeError, match=r"mnist digit classifier's held-out accuracy 0\.\d+ is below 0\.97"
  ):
    classifier_lib.load_digit_classifier(cache_dir=str(tmp_path), config=weak)


def test_mnist_real_images_as_samples_cover_all_ten_classes_with_kl_near_zero(
  mnist_stand_in, mnist_classifier
):
  dataset = datasets.get_dataset(_config("mnist").data)
  data = dataset.source
  assert isinstance(data, tfds_source.TfdsImages) and data.num_modes == 10
  assert dataset.has_modes
  assert dataset.classifier().cache_path == mnist_classifier.cache_path
  labels, _ = images.classify_channels(mnist_classifier, data.images.astype(np.float32) / 255.0)
  row = images.mode_metrics(labels, data.mode_distribution())
  assert row["modes"] == 10 and row["kl"] < 0.01


def test_mnist_and_stacked_mnist_runs_log_modes_and_kl(mnist_stand_in, mnist_classifier, tmp_path):
  mnist = gan_trainer.train_and_evaluate(_config("mnist"), str(tmp_path / "mnist"))
  assert 1 <= mnist["modes"] <= 10 and np.isfinite(mnist["kl"]) and len(mnist["mode_counts"]) == 10
  assert np.isfinite(mnist["classifier_fid"])
  config = _config("stacked_mnist", **{"eval.feature_metrics": False})
  data = datasets.get_dataset(config.data).source
  assert isinstance(data, stacked.StackedDigits) and data.classifier == "mnist"
  row = gan_trainer.train_and_evaluate(config, str(tmp_path / "stacked"))
  assert 1 <= row["modes"] <= 1000 and len(row["mode_counts"]) == 1000 and np.isfinite(row["kl"])
