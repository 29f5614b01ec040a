"""What a trained DGN's codes can do: interpolations between codes, new codes sampled from
densities fitted to the learned ones (a Gaussian and a Gaussian mixture; these and the other
code priors live in jgen/evals/code_priors.py), and the metrics of the images they generate
(jgen/trainers/dgn.py draws the pictures and prefixes the metrics gaussian_ / gmm_):
  nn_distance         mean L2 distance of a sample to its nearest training image
  frechet_random_conv Frechet distance between samples and training images in the per-channel
                      means of the fixed random conv net's layers (jgen/evals/fidelity.py; 96
                      numbers: its full 6,144 activations made the distance take minutes)
and, when jgen's digit classifier exists (jgen/evals/digit_classifier.py), on single digits:
  modes               classes with at least one confidently classified sample (p >= 0.5)
  reverse_kl          KL(class histogram of confident samples || uniform over the 10 classes)
  confidence          mean top-class probability
  frechet_classifier  Frechet distance in the classifier's penultimate features
"""

import jax
import jax.numpy as jnp
import numpy as np

from jgen.evals import features as features_lib
from jgen.evals import fidelity, memorization

# The code priors live in code_priors.py; these names stay importable from here for the
# callers that already use them (jgen/trainers/dgn.py, tests/test_reconstruct.py).
from jgen.evals.code_priors import fit_and_sample as fit_and_sample
from jgen.evals.code_priors import lerp as lerp
from jgen.evals.code_priors import slerp as slerp


def interpolations(latents, pairs, steps: int, kind: str) -> np.ndarray:
  """float32[len(pairs), steps, z_dim]: codes from z_i (t=0) to z_j (t=1)."""
  fn = {"linear": lerp, "spherical": slerp}[kind]
  ts = np.linspace(0.0, 1.0, steps)
  latents = np.asarray(latents, np.float64)
  return np.asarray([[fn(latents[i], latents[j], t) for t in ts] for i, j in pairs], np.float32)


def digit_classifier_or_none():
  """The digit classifier (trained once per machine, then read from its cache)."""
  from jgen.evals import digit_classifier  # trains or loads on first use: only when asked

  return digit_classifier.load_digit_classifier()


def sample_metrics(samples, train_images, classifier=None, held_out=None) -> dict:
  """The metrics of generated images; with `held_out` real images also the classifier Frechet
  distance to them (a generator that replays its training set does not win it) and the
  memorization rate (jgen/evals/memorization.py) of the samples against the training images."""
  samples, train_images = jnp.asarray(samples), jnp.asarray(train_images)
  flat_s = samples.reshape(len(samples), -1)
  flat_t = train_images.reshape(len(train_images), -1)
  d2 = jnp.sum(flat_s**2, 1)[:, None] - 2 * flat_s @ flat_t.T + jnp.sum(flat_t**2, 1)[None, :]
  features = fidelity.random_conv_features(tuple(samples.shape[1:]), pooled=True)
  row = {
    "nn_distance": float(jnp.sqrt(jnp.clip(d2.min(axis=1), 0, None)).mean()),
    "frechet_random_conv": features_lib.fid(features(samples), features(train_images)),
  }
  if classifier is not None and tuple(samples.shape[1:]) == (8, 8, 1):
    probs = np.asarray(jax.nn.softmax(classifier.logits(samples), axis=-1))
    confident = probs.max(axis=1) >= 0.5
    counts = np.bincount(probs.argmax(axis=1)[confident], minlength=probs.shape[1])
    p = counts / max(counts.sum(), 1)
    nz = p > 0
    row.update(
      modes=int((counts > 0).sum()),
      reverse_kl=float(np.sum(p[nz] * np.log(p[nz] * probs.shape[1]))) if counts.sum() else None,
      confidence=float(probs.max(axis=1).mean()),
      frechet_classifier=features_lib.fid(
        classifier.features(samples), classifier.features(train_images)
      ),
    )
    if held_out is not None:
      row["frechet_classifier_held_out"] = features_lib.fid(
        classifier.features(samples), classifier.features(jnp.asarray(held_out))
      )
  if held_out is not None:
    row["memorization_rate"] = memorization.memorization_rate(samples, train_images)["rate"]
  return row
