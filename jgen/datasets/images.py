"""Image datasets (stacked digits; TFDS by random access) with their evaluation and picture.

Evaluation of one member's generated images: for data with a digit classifier (stacked
digits, stacked MNIST, MNIST) modes, KL to the data's mode distribution and the classifier-
feature metrics (jgen/evals/images.py); for every image dataset the diversity of the batch
and, given weights, the Inception FID. Reference images and their features are computed
once per dataset object, so they live as long as the run that built it.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jgen.core import rng
from jgen.data import reference, single_digits, stacked, tfds_source
from jgen.evals import diversity, images
from jgen.viz import imgrid, plots

CURVES = ("modes", "kl", "classifier_fid", "classifier_recall", "d_loss", "g_loss")

Source = stacked.StackedDigits | single_digits.SingleDigits | tfds_source.TfdsImages


@functools.lru_cache(maxsize=4)  # one classifier per recipe and data directory
def _load_classifier(recipe: str, data_dir: str | None):
  from jgen.evals import digit_classifier

  return digit_classifier.load_digit_classifier(data=recipe, data_dir=data_dir)


@jax.jit
def _diversity(samples):
  return diversity.mean_pairwise_distance(samples.reshape(samples.shape[0], -1))


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: part of static jit args
class ImageDataset:
  source: Source
  curves: tuple = CURVES
  _memo: dict = dataclasses.field(default_factory=dict, repr=False)

  @property
  def name(self) -> str:
    return self.source.name

  @property
  def sample_shape(self) -> tuple:
    return tuple(self.source.sample_shape)

  @property
  def num_modes(self) -> int:
    return self.source.num_modes

  @property
  def on_host(self) -> bool:
    return getattr(self.source, "on_host", False)

  @property
  def has_modes(self) -> bool:
    """Stacked digits, stacked MNIST and MNIST have a classifier; CIFAR-10 and CelebA not."""
    return getattr(self.source, "classifier", None) is not None

  def training_set(self, key: jax.Array, num_train: int):
    return self.source.training_set(key, num_train)

  def gather(self, train_set, indices_B: jax.Array) -> jax.Array:
    return self.source.gather(train_set, indices_B)

  def host_batches(self, sample_indices, root, batch_size, start, end, workers):
    """Batches of steps start+1..end read on the host, in the sampler's order."""
    return tfds_source.HostBatches(
      self.source, sample_indices, root, batch_size, start, end, workers
    )

  def from_host(self, batch_uint8: jax.Array) -> jax.Array:
    """A host batch scaled inside jit exactly as `gather` scales device data."""
    return tfds_source.to_float(batch_uint8)

  def classifier(self):
    """The digit classifier that labels the channels (trained once, or read from its cache)."""
    return _load_classifier(self.source.classifier, self.source.classifier_data_dir)

  def reference_images(self, num: int) -> np.ndarray:
    """`num` real images (jgen/data/reference.py), drawn once per dataset object."""
    key = ("images", num)
    if key not in self._memo:
      self._memo[key] = reference.reference_images(self.source, num)
    return self._memo[key]

  def _reference_features(self, num: int) -> np.ndarray:
    key = ("classifier_features", num)
    if key not in self._memo:
      self._memo[key] = images.classify_channels(self.classifier(), self.reference_images(num))[1]
    return self._memo[key]

  def _inception(self, samples, eval_config) -> dict:
    """The standard Inception FID of the first eval.inception_samples samples against as many
    reference images (jgen/evals/inception.py); ~6 GFLOP an image, meant for accelerators."""
    from jgen.evals import inception

    path, num = eval_config.inception_weights, eval_config.inception_samples
    key = ("inception_features", num, path)
    if key not in self._memo:
      model = inception.load_inception(path)
      self._memo[key] = inception.inception_features(model, self.reference_images(num))
    return inception.inception_fid_row(path, self._memo[key], samples[:num])

  def evaluate(self, samples, eval_config) -> dict:
    samples = np.asarray(samples)
    row = self._inception(samples, eval_config) if eval_config.get("inception_weights") else {}
    if self.has_modes:
      row |= images.evaluate(
        samples,
        self._reference_features(len(samples)),
        self.source.mode_distribution(),
        self.classifier(),
        eval_config,
        features_too=eval_config.feature_metrics,
      )
      row["reverse_kl"] = row["kl"]  # the one KL field detectors and studies read
    return {**row, "diversity": float(_diversity(samples))}

  def picture(self, path: str, samples, title: str, row: dict | None) -> None:
    plots.image_grid(path, samples, title=title, metrics=row)

  def side_by_side(self, path: str, rows, row_titles, title: str) -> None:
    """Rows of generated images, one grid (e.g. two branches at each evaluation)."""
    imgrid.save_grid(path, [list(row) for row in rows], row_titles=row_titles, title=title)

  def progress_text(self, row: dict) -> str:
    if "modes" not in row:
      return f"diversity {row['diversity']:.4f}"
    fid = row.get("classifier_fid")
    text = f"modes {row['modes']}/{self.num_modes} kl {row['kl']:.4f}"
    return text + ("" if fid is None else f" classifier_fid {fid:.3f}")


def image_dataset(name: str, data_config) -> ImageDataset:
  if name == "stacked_digits":
    return ImageDataset(stacked.stacked_digits())
  if name == "digits":
    return ImageDataset(single_digits.single_digits())
  return ImageDataset(tfds_source.load(name, data_config))


def training_images(name: str, num_train: int, seed: int) -> np.ndarray:
  """The images a run of `seed` trains on, on the host, float32 [num_train, 8, 8, C]: the first
  `num_train` single digits (the same for every seed), or the seed's stacked-digit triples,
  drawn from the TRAIN_SET stream of its root key as every trainer draws its training set."""
  if name == "digits":
    source = single_digits.single_digits()
    key = None
  elif name == "stacked_digits":
    source = stacked.stacked_digits()
    key = rng.stream_key(rng.root_key(seed), rng.Stream.TRAIN_SET)
  else:
    raise ValueError(f"unknown data.name {name!r}; valid choices: digits, stacked_digits")
  train_set = source.training_set(key, num_train)
  return np.asarray(jax.device_get(source.gather(train_set, jnp.arange(num_train))))
