"""Reconstruction losses (by name) and the feature nets of perceptual losses.

Losses map (prediction, target, aux) to one scalar, the mean over the batch:
  mse           Gaussian MLE with a fixed variance (mean squared error)
  l1            Laplace MLE with a fixed scale (mean absolute error)
  gaussian_nll  Gaussian MLE with one learned variance: 0.5 (x - G)^2 / s^2 + log s, per
                pixel; log s is a learned scalar floored at `min_log_sigma`
  perceptual    mean squared distance between features of a fixed net (`features`):
                `classifier` (jgen's digit classifier, penultimate layer) or `random_conv`
                (a fixed random conv net, jgen/evals/fidelity.py), plus
                `pixel_weight` x mse
"""

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from jgen.core import registry
from jgen.evals.fidelity import random_conv_features

LOSSES = ("mse", "l1", "gaussian_nll", "perceptual")


def classifier_features(image_shape: tuple) -> Callable:
  """features(x [N, 8, 8, 1]) -> [N, F] of jgen's digit classifier (trained once, cached)."""
  if tuple(image_shape) != (8, 8, 1):
    raise ValueError(
      f"the classifier's features are defined for 8x8x1 digits, not {image_shape}; use "
      "loss.features=random_conv"
    )
  from jgen.evals import digit_classifier  # loads scikit-learn and trains once: only on use

  return digit_classifier.load_digit_classifier().features


def make_features(name: str, image_shape: tuple) -> Callable:
  """features(x [N, *image_shape]) -> [N, F] of the named fixed net."""
  build = registry.choose(
    "loss.features", name, {"random_conv": random_conv_features, "classifier": classifier_features}
  )
  return build(tuple(image_shape))


@dataclasses.dataclass(frozen=True, eq=False)
class ReconstructionLoss:
  """loss(prediction, target, log_sigma) -> scalar; `learns_sigma` adds a log_sigma param."""

  name: str
  fn: Callable
  learns_sigma: bool = False

  def __call__(self, prediction, target, log_sigma=None):
    return self.fn(prediction, target, log_sigma)


def make_loss(config, image_shape: tuple) -> ReconstructionLoss:
  """From config.loss: name, and features, pixel_weight, min_log_sigma where they apply."""
  name = config.name
  registry.choose("loss.name", name, dict.fromkeys(LOSSES))
  if name == "mse":
    return ReconstructionLoss(name, lambda p, t, _: jnp.mean(jnp.square(p - t)))
  if name == "l1":
    return ReconstructionLoss(name, lambda p, t, _: jnp.mean(jnp.abs(p - t)))
  if name == "gaussian_nll":
    floor = config.min_log_sigma

    def nll(p, t, log_sigma):
      log_sigma = jnp.maximum(log_sigma, floor)
      return jnp.mean(0.5 * jnp.square(p - t) * jnp.exp(-2 * log_sigma) + log_sigma)

    return ReconstructionLoss(name, nll, learns_sigma=True)
  pixel_weight = config.pixel_weight
  # Built (and its parameters made) here, outside any trace, so jit never captures a tracer.
  features = make_features(config.features, image_shape)

  def perceptual(p, t, _):
    distance = jnp.mean(jnp.sum(jnp.square(features(p) - features(t)), axis=-1))
    return distance + pixel_weight * jnp.mean(jnp.square(p - t))

  return ReconstructionLoss(name, perceptual)
