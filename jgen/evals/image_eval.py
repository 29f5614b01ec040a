"""The GAN trainer's evaluation of image runs: a fixed-z batch of generated images, and
jgen/evals/images.py on it (stacked digits: modes, KL, classifier-feature metrics, birthday).

Kept apart from gan.py so that the 2D path never loads the digit classifier.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jgen.core import rng
from jgen.data import tfds_source
from jgen.evals import diversity, images

# The real reference set is drawn from the data distribution with its own key (a fold of the
# EVAL stream), not taken from the training set: it is the same for every seed's run.
_REFERENCE_KEY = 0


@functools.partial(jax.jit, static_argnums=0)
def _generate(gan, g_params, root):
  def one(g_params, root):
    # The same z at every evaluation, so curves show G changing, not z noise.
    z = jax.random.normal(rng.stream_key(root, rng.Stream.EVAL), (gan.eval_samples, gan.z_dim))
    samples = gan.generator.apply(g_params, z)
    flat = samples.reshape(samples.shape[0], -1)
    return samples, diversity.mean_pairwise_distance(flat)

  return one(g_params, root) if gan.population == 1 else jax.vmap(one)(g_params, root)


@functools.cache
def reference_images(data, num: int) -> np.ndarray:
  """`num` real images drawn from the data distribution with a fixed key (host, cached)."""
  if getattr(data, "on_host", False):  # large TFDS data: the first `num` records
    records = np.stack([data.read(i) for i in range(min(num, data.num_examples))])
    return np.asarray(tfds_source.to_float(records))  # the trainer's own scaling
  key = jax.random.fold_in(jax.random.key(_REFERENCE_KEY), int(rng.Stream.EVAL))
  reference = data.training_set(key, num)
  return np.asarray(jax.device_get(data.gather(reference, jnp.arange(num))))


@functools.cache
def _load_classifier(recipe: str, data_dir: str | None):
  from jgen.evals import digit_classifier

  return digit_classifier.load_digit_classifier(data=recipe, data_dir=data_dir)


def classifier_of(data):
  """The digit classifier that labels `data`'s channels (trained or read from the cache)."""
  return _load_classifier(data.classifier, data.classifier_data_dir)


@functools.cache
def _reference_features(data, num: int) -> np.ndarray:
  """The classifier features of `reference_images`, computed once per process."""
  return images.classify_channels(classifier_of(data), reference_images(data, num))[1]


def has_modes(data) -> bool:
  """Stacked digits, stacked MNIST and MNIST have a classifier; CIFAR-10 and CelebA do not."""
  return getattr(data, "classifier", None) is not None


def evaluate(gan, state, root) -> tuple[np.ndarray, dict]:
  """(samples [n, H, W, C] or [P, n, ...], the row); for a population every value is a list."""
  samples, spread = jax.device_get(_generate(gan, state.g_params, root))
  samples = np.asarray(samples)
  if gan.population == 1:
    return samples, {**_metrics(gan, samples), "diversity": float(spread)}
  rows = [_metrics(gan, member) for member in samples]
  row = {key: [r[key] for r in rows] for key in rows[0]}
  return samples, {**row, "diversity": [float(s) for s in spread]}


@functools.cache
def _reference_inception_features(data, num: int, weights_path: str) -> np.ndarray:
  """The pool3 features of the first `num` reference images, computed once per process."""
  from jgen.evals import inception

  model = inception.load_inception(weights_path)
  return inception.inception_features(model, reference_images(data, num))


def _inception(gan, samples) -> dict:
  """The standard Inception FID of the first eval.inception_samples samples against as many
  reference images (jgen/evals/inception.py); ~6 GFLOP an image, so meant for accelerators."""
  from jgen.evals import inception

  path, num = gan.eval_config.inception_weights, gan.eval_config.inception_samples
  real_features = _reference_inception_features(gan.images, num, path)
  return inception.inception_fid_row(path, real_features, samples[:num])


def _metrics(gan, samples) -> dict:
  row = _inception(gan, samples) if gan.eval_config.get("inception_weights") else {}
  if not has_modes(gan.images):
    # No classifier for this data (CIFAR-10, CelebA): samples, diversity and, with weights
    # the user provides, the Inception FID (docs/images.md).
    return row
  classifier = classifier_of(gan.images)
  return row | images.evaluate(
    samples,
    _reference_features(gan.images, gan.eval_samples),
    gan.images.mode_distribution(),
    classifier,
    gan.eval_config,
    features_too=gan.eval_config.feature_metrics,
  )
