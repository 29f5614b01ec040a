"""Named evaluators: what a config lists under `config.evals`, each with its own schedule and
sample count (big_vision's config.evals), scoring any generator through one sampling call.

  c.evals = ml_collections.ConfigDict({
    "fd": {"type": "classifier_fd", "every": 1000, "num_samples": 2000},
    "modes": {"type": "mixture", "every": 200, "num_samples": 2500},
  })

An evaluator draws `num_samples` samples with `trainer.sample(state, root, n)` (jgen/run/
interface.py: GANs, flow matching, noise prediction, the discriminator flow alike) at every
logged step that is a multiple of `every`, and adds its metrics to that row as "<name>/<key>"
(a population's as lists over members). The rows a config without `evals` writes are the
dataset's evaluation on train.eval_every, unchanged. jgen/trainers/scoring.py scores a saved
checkpoint with the same evaluators (`python -m jgen.evaluate --workdir=W --evals=...`).

Types, by name:
  mixture           2D mixtures: PacGAN's modes, high-quality fraction, reverse KL, diversity
  images            image data: the dataset's row (modes, KL, classifier features, diversity)
  classifier_fd     Frechet distance of the digit classifier's features to real images
  precision_recall  k-NN precision and recall (Kynkaanniemi et al. 2019): points for 2D
                    mixtures, classifier features for images
  sliced_w1         2D mixtures: the sliced 1-Wasserstein distance to as many fresh draws of the
                    mixture (one fixed key), a continuous distance beside the mode count
  memorization      the fraction of samples closer to their nearest training example than half
                    that example's distance to its own nearest neighbour, and the median
                    ratio (jgen/evals/memorization.py; report held-out data's rate beside it)
  inception_fid     the standard FID on Inception-v3 pool3 features; needs
                    eval.inception_weights (python -m jgen.inception_weights makes them)
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jgen.core import registry
from jgen.datasets.images import ImageDataset
from jgen.datasets.mixture import MixtureData
from jgen.evals import distances, features, images, memorization

MAX_TRAIN_COMPARED = 20_000  # training examples a memorization test compares against
REFERENCE_SEED = 20181204  # the mixture draws a sliced_w1 compares with: the same for every run


def _mixture(data, samples, train, eval_config):
  del train
  if not isinstance(data, MixtureData):
    raise ValueError(f"evaluator type 'mixture' needs a 2D mixture, not {data.name}")
  return data.evaluate(samples, eval_config)


def _images(data, samples, train, eval_config):
  del train
  if not isinstance(data, ImageDataset):
    raise ValueError(f"evaluator type 'images' needs image data, not {data.name}")
  return data.evaluate(samples, eval_config)


def reference_draws(data, count: int) -> np.ndarray:
  """`count` fresh draws of a 2D mixture, the same for every run and member."""
  return np.asarray(data.mixture.sample(jax.random.key(REFERENCE_SEED), count))


def _sliced_w1(data, samples, train, eval_config):
  del train, eval_config
  if not isinstance(data, MixtureData):
    raise ValueError(f"evaluator type 'sliced_w1' needs a 2D mixture, not {data.name}")
  return {"sliced_w1": distances.sliced_w1(samples, reference_draws(data, len(samples)))}


def _classifier_features(data, samples):
  if not isinstance(data, ImageDataset) or not data.has_modes:
    raise ValueError(
      f"{data.name} has no digit classifier for classifier features; use an image dataset "
      "with modes (stacked_digits, mnist, stacked_mnist)"
    )
  fake = images.classify_channels(data.classifier(), samples)[1]
  real = images.classify_channels(data.classifier(), data.reference_images(len(samples)))[1]
  return real, fake


def _classifier_fd(data, samples, train, eval_config):
  del train, eval_config
  real, fake = _classifier_features(data, samples)
  return {"classifier_fd": features.fid(real, fake)}


def _precision_recall(data, samples, train, eval_config):
  del eval_config
  if isinstance(data, MixtureData):
    real, fake = _training_examples(data, train, len(samples)), samples
  else:
    real, fake = _classifier_features(data, samples)
  precision, recall = features.precision_recall(real, fake)
  return {"precision": precision, "recall": recall}


def _training_examples(data, train, limit: int):
  """The first `limit` examples of the training set (gathered as the steps gather them)."""
  train_set, num_train = train
  if train_set is None or data.on_host:
    raise ValueError(
      "this run has no training set on the device to compare with (fresh samples every step, "
      "or data read on the host)"
    )
  return np.asarray(data.gather(train_set, jnp.arange(min(MAX_TRAIN_COMPARED, limit, num_train))))


def _memorization(data, samples, train, eval_config):
  del eval_config
  train = _training_examples(data, train, MAX_TRAIN_COMPARED)
  if len(train) < 2:
    raise ValueError("the memorization test needs at least 2 training examples")
  result = memorization.memorization_rate(samples, train)
  return {"memorization_rate": result["rate"], "memorization_median_ratio": result["median_ratio"]}


def _inception_fid(data, samples, train, eval_config):
  del train
  if not eval_config.get("inception_weights"):
    raise ValueError(
      "evaluator type 'inception_fid' needs eval.inception_weights (an .npz made by "
      "python -m jgen.inception_weights)"
    )
  if not isinstance(data, ImageDataset):
    raise ValueError(f"evaluator type 'inception_fid' needs image data, not {data.name}")
  from jgen.evals import inception

  real = data.reference_images(len(samples))
  return inception.inception_fid_row(eval_config.inception_weights, real, samples)


TYPES = {
  "mixture": _mixture,
  "images": _images,
  "classifier_fd": _classifier_fd,
  "precision_recall": _precision_recall,
  "sliced_w1": _sliced_w1,
  "memorization": _memorization,
  "inception_fid": _inception_fid,
}


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """One entry of config.evals: `name` prefixes its row keys."""

  name: str
  type: str
  every: int
  num_samples: int

  def score(self, data, samples, train, eval_config) -> dict:
    """The metrics of one member's `samples` (`train`: its training set and num_train), keys
    prefixed with the evaluator's name."""
    row = TYPES[self.type](data, np.asarray(samples), train, eval_config)
    return {f"{self.name}/{key}": value for key, value in row.items()}

  def __call__(self, trainer, state, root, data) -> dict:
    """Draws through trainer.sample and scores every member (jgen/run/loop.py calls this)."""
    if not isinstance(getattr(trainer, "data", None), MixtureData | ImageDataset):
      raise ValueError(
        f"evaluator {self.name}: {type(trainer).__name__} does not train on a dataset of "
        "jgen/datasets, so there is no reference data to score its samples against"
      )
    samples = trainer.sample(state, root, self.num_samples)
    train = (data, trainer.num_train)
    if trainer.population == 1:
      return self.score(trainer.data, samples, train, trainer.eval_config)
    rows = [
      self.score(trainer.data, member, _member(train, index), trainer.eval_config)
      for index, member in enumerate(samples)
    ]
    return {key: [row[key] for row in rows] for key in rows[0]}


def _member(train, index: int):
  train_set, num_train = train
  return None if train_set is None else jax.tree.map(lambda x: x[index], train_set), num_train


def parse(evals_config, log_every: int | None = None) -> tuple[Evaluator, ...]:
  """The evaluators a config lists (`config.evals`, or None: none); raises ValueError naming
  the fix for an unknown type, a bad count or a schedule off the log steps."""
  if not evals_config:
    return ()
  found = []
  for name, spec in sorted(dict(evals_config).items()):
    registry.choose(f"evals.{name}.type", spec["type"], TYPES)
    every, num_samples = int(spec["every"]), int(spec["num_samples"])
    if every < 1 or num_samples < 2:
      raise ValueError(
        f"evals.{name} needs every >= 1 and num_samples >= 2, got {every}, {num_samples}"
      )
    if log_every is not None and every % log_every:
      raise ValueError(
        f"evals.{name}.every={every} must be a multiple of train.log_every={log_every}: an "
        "evaluation is written into a logged row"
      )
    found.append(Evaluator(name, spec["type"], every, num_samples))
  return tuple(found)
