"""Evaluation of generated images: stacked-digit modes and KL, classifier-feature metrics, and
the birthday test. One row of plain Python values, as the trainer logs and jgen.evaluate prints.

Modes (VEEGAN / PacGAN Stacked MNIST): each channel is classified by jgen's digit classifier;
the label triple is the sample's mode, one of 1,000.
  modes        modes holding at least one sample
  kl           KL(p_gen || p_data) in nats over the 1,000 modes: p_gen the histogram of the
               samples' modes, p_data the data's mode distribution (jgen/data/stacked.py).
               This direction stays finite when modes are missing, which is how VEEGAN and
               PacGAN report it; p_data is the exact product of the class frequencies, not
               uniform (within 0.1% of it for scikit-learn's digits).
Feature metrics use the classifier's penultimate features, the three channels concatenated
(3 x 128): `classifier_fid`, `classifier_kid`, ... They are not Inception metrics.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jgen.data import stacked
from jgen.evals import birthday, features

FEATURE_SPACE = "jgen digit classifier, penultimate layer, channels concatenated (not Inception)"


@functools.partial(jax.jit, static_argnums=0)
def _classify_chunk(classifier, x_NxHxWxC):
  n, h, w, c = x_NxHxWxC.shape
  per_channel = jnp.moveaxis(x_NxHxWxC, -1, 1).reshape(n * c, h, w, 1)
  logits, feats = classifier.module.apply(classifier.params, per_channel)
  labels_NxC = jnp.argmax(logits, -1).astype(jnp.int32).reshape(n, c)
  return labels_NxC, feats.reshape(n, -1)


def classify_channels(classifier, x_NxHxWxC, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """(labels int32 [N, C], features float32 [N, C*F]) of each channel of each image."""
  x = np.asarray(x_NxHxWxC, np.float32)
  outputs = [_classify_chunk(classifier, x[i : i + chunk]) for i in range(0, len(x), chunk)]
  labels, feats = zip(*jax.device_get(outputs), strict=True)
  return np.concatenate(labels), np.concatenate(feats)


def mode_metrics(labels_NxC: np.ndarray, p_data_K: np.ndarray) -> dict:
  """modes, kl = KL(p_gen || p_data), mode_counts over 10^C modes."""
  mode_N = np.asarray(stacked.mode_of_labels(jnp.asarray(labels_NxC)))
  counts_K = np.bincount(mode_N, minlength=len(p_data_K))
  p_gen = counts_K / counts_K.sum()
  present = p_gen > 0
  kl = float(np.sum(p_gen[present] * np.log(p_gen[present] / p_data_K[present])))
  return {"modes": int(present.sum()), "kl": kl, "mode_counts": counts_K.tolist()}


def feature_metrics(real_NxF, fake_NxF, eval_config, seed: int = 0) -> dict:
  """classifier_{fid,kid,kid_std,precision,recall,density,coverage} and the birthday test."""
  n_pr = min(eval_config.feature_samples, len(real_NxF), len(fake_NxF))
  kid_mean, kid_std = features.kid(
    real_NxF, fake_NxF, eval_config.kid_subset_size, eval_config.kid_subsets, seed
  )
  precision, recall = features.precision_recall(real_NxF[:n_pr], fake_NxF[:n_pr])
  density, coverage = features.density_coverage(real_NxF[:n_pr], fake_NxF[:n_pr])
  row = {
    "classifier_fid": features.fid(real_NxF, fake_NxF),
    "classifier_kid": kid_mean,
    "classifier_kid_std": kid_std,
    "classifier_precision": precision,
    "classifier_recall": recall,
    "classifier_density": density,
    "classifier_coverage": coverage,
  }
  return {**row, **birthday_metrics(real_NxF[:n_pr], fake_NxF, eval_config, seed)}


def birthday_metrics(real_NxF, fake_NxF, eval_config, seed: int = 0) -> dict:
  """Support estimates of the fakes and, under the same duplicate threshold, of real data.

  The threshold is the `birthday_quantile` quantile of real nearest-neighbour distances.
  """
  threshold = float(
    np.quantile(birthday.nearest_neighbour_distances(real_NxF), eval_config.birthday_quantile)
  )
  batch, batches = eval_config.birthday_batch, eval_config.birthday_batches
  row = {"birthday_threshold": threshold}
  for name, x in (("birthday_support", fake_NxF), ("birthday_support_real", real_NxF)):
    size = min(batch, len(x))
    rate = birthday.collision_rate(x, size, batches, threshold, seed)
    support = birthday.support_size(rate, size, batches)
    row[name] = None if support == float("inf") else support
  return row


def evaluate(samples, real, p_data_K, classifier, eval_config, features_too: bool = True) -> dict:
  """The evaluation row of generated images `samples` against real images `real` (or, to
  skip classifying them again, their features from `classify_channels`)."""
  labels, fake_features = classify_channels(classifier, samples)
  row = mode_metrics(labels, p_data_K)
  if features_too:
    real_features = real if real.ndim == 2 else classify_channels(classifier, real)[1]
    row.update(feature_metrics(real_features, fake_features, eval_config))
  return row
