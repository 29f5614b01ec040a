"""Mode-collapse metrics of samples saved to a .npy file by any codebase (`jgen.evaluate`).

2D points against ring8 or grid25 (the PacGAN / VEEGAN protocol: 2,500 samples), or stacked
digit images [n, 8, 8, 3] in [0, 1] against 26,000 real images drawn with a fixed key: modes,
KL and feature metrics on jgen's digit classifier, and with Inception weights the standard FID.
"""

import os
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from jgen.core import registry
from jgen.data import mixtures
from jgen.evals import modes

STACKED_DIGITS = "stacked_digits"
IMAGE_SHAPE = (8, 8, 3)

# The evaluation settings of configs/stacked_digits_gan.py (pinned; docs/images.md).
IMAGE_EVAL = {
  "feature_samples": 5000,
  "kid_subset_size": 1000,
  "kid_subsets": 20,
  "birthday_batch": 100,
  "birthday_batches": 200,
  "birthday_quantile": 0.01,
}


class EvaluateError(ValueError):
  """A problem with the user's input: its message says what and where."""


def load_samples(path: str, shape: tuple[int, ...] = (2,)) -> np.ndarray:
  """Reads and validates samples [n, *shape] from a .npy file, or raises EvaluateError."""
  if not os.path.exists(path):
    raise EvaluateError(f"samples file not found: {path}")
  if os.path.isdir(path):
    raise EvaluateError(f"samples path is a directory, not a .npy file: {path}")
  try:
    # allow_pickle=False: a .npy from elsewhere must not be able to run code here.
    samples = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise EvaluateError(f"cannot read {path} as a .npy array ({e})") from None
  if isinstance(samples, np.lib.npyio.NpzFile):
    samples.close()
    raise EvaluateError(f"{path} is a .npz archive; save one array with np.save")
  if samples.dtype.kind not in "iuf":
    raise EvaluateError(f"samples must be real numbers, got dtype {samples.dtype} in {path}")
  wanted = "[n, " + ", ".join(map(str, shape)) + "]"
  if samples.ndim != 1 + len(shape) or tuple(samples.shape[1:]) != tuple(shape):
    raise EvaluateError(f"samples must have shape {wanted}, got {list(samples.shape)} in {path}")
  if samples.shape[0] == 0:
    raise EvaluateError(f"{path} holds no samples (shape {[0, *shape]})")
  finite_N = np.isfinite(samples).reshape(len(samples), -1).all(axis=1)
  if not finite_N.all():
    bad_values = int(np.size(samples) - np.isfinite(samples).sum())
    raise EvaluateError(
      f"{bad_values} non-finite values (NaN or inf) in {int((~finite_N).sum())} of "
      f"{samples.shape[0]} samples in {path}"
    )
  # The metrics compute in float32: a value beyond its range (~3.4e38) would become inf there.
  if samples.dtype.kind == "f" and samples.dtype.itemsize > 4:
    too_big_N = (np.abs(samples) > np.finfo(np.float32).max).reshape(len(samples), -1).any(axis=1)
    if too_big_N.any():
      first = int(np.argmax(too_big_N))
      raise EvaluateError(
        f"{int(too_big_N.sum())} of {samples.shape[0]} samples in {path} hold values beyond "
        f"float32's range (first: sample {first}, max |value| {np.abs(samples).max():.3g}), "
        "which the metrics' float32 arithmetic turns into inf; rescale or drop them"
      )
  return samples


def get_mixture(data: str) -> mixtures.Mixture:
  try:
    return mixtures.get_mixture(data)
  except registry.UnknownNameError:
    valid = ", ".join(sorted([*mixtures.MIXTURES, STACKED_DIGITS]))
    raise EvaluateError(f"unknown data {data!r}; valid choices: {valid}") from None


def evaluate(samples_Nx2: np.ndarray, mixture: mixtures.Mixture) -> dict:
  """The 2D row: modes, high_quality, reverse_kl and mode_counts."""
  metrics = modes.to_json_row(modes.mode_metrics(samples_Nx2, mixture))
  return {
    "data": mixture.name,
    "num_samples": int(samples_Nx2.shape[0]),
    "modes": metrics["modes"],
    "num_modes_total": mixture.num_modes,
    "high_quality": metrics["high_quality"],
    "reverse_kl": metrics["reverse_kl"],
    "mode_counts": metrics["mode_counts"],
  }


def evaluate_images(samples: np.ndarray, inception_weights: str = "") -> dict:
  """The stacked-digit row: modes, kl, mode_counts and the classifier-feature metrics, and
  with `inception_weights` the standard Inception FID against the same real images."""
  from jgen.data import reference, stacked
  from jgen.evals import digit_classifier, images

  data = stacked.stacked_digits()
  eval_config = ml_collections.ConfigDict(IMAGE_EVAL)
  real = reference.reference_images(data, stacked.PROTOCOL_NUM_SAMPLES)
  classifier = digit_classifier.load_digit_classifier()
  row = images.evaluate(samples, real, data.mode_distribution(), classifier, eval_config)
  counts = row.pop("mode_counts")
  inception_row = {}
  if inception_weights:
    from jgen.evals import inception

    inception_row = inception.inception_fid_row(inception_weights, real, samples)
    inception_row["inception_feature_space"] = inception.FEATURE_SPACE
  return {
    "data": data.name,
    "num_samples": int(samples.shape[0]),
    "num_modes_total": data.num_modes,
    **row,
    "feature_space": images.FEATURE_SPACE,
    "classifier_held_out_accuracy": classifier.accuracy,
    **inception_row,
    "mode_counts": counts,
  }


def _on_cpu_unless_asked() -> None:
  if "JAX_PLATFORMS" not in os.environ:
    # The metrics need no accelerator, and on a TPU host a running training job holds the chips.
    jax.config.update("jax_platforms", "cpu")


def evaluate_file(
  data: str, path: str, inception_weights: str = "", note: Callable[[str], None] = print
) -> tuple[dict, np.ndarray]:
  """(the JSON row, the samples) for the samples in `path`, imitating `data`.

  Raises EvaluateError for a bad input before computing anything. `note` receives remarks
  worth reading beside the row: a sample count off the protocol's, the Inception run's cost.
  """
  if data == STACKED_DIGITS:
    return _evaluate_image_file(path, inception_weights, note)
  if inception_weights:
    raise EvaluateError(
      f"--inception_weights applies to images (--data={STACKED_DIGITS}), not to {data!r}"
    )
  mixture = get_mixture(data)
  samples_Nx2 = load_samples(path)
  _on_cpu_unless_asked()
  n = samples_Nx2.shape[0]
  if n != modes.PROTOCOL_NUM_SAMPLES:
    note(
      f"{n} samples; the published protocol uses 2,500, "
      "so these numbers are not directly comparable with the papers'"
    )
  return evaluate(samples_Nx2, mixture), samples_Nx2


def _evaluate_image_file(
  path: str, inception_weights: str, note: Callable[[str], None]
) -> tuple[dict, np.ndarray]:
  from jgen.data import stacked

  samples = load_samples(path, IMAGE_SHAPE)
  if samples.min() < 0 or samples.max() > 1:
    raise EvaluateError(
      f"images must hold values in [0, 1], got [{samples.min()}, {samples.max()}] in {path} "
      "(scikit-learn's digits: divide by 16)"
    )
  _on_cpu_unless_asked()
  if inception_weights:
    from jgen.evals import inception

    inception.load_inception(inception_weights)  # a bad file fails now, not after the metrics
    note(
      f"Inception features of {stacked.PROTOCOL_NUM_SAMPLES} real and {samples.shape[0]} "
      f"generated images on {jax.default_backend()} (~6 GFLOP each)"
    )
  if samples.shape[0] != stacked.PROTOCOL_NUM_SAMPLES:
    note(
      f"{samples.shape[0]} samples; the protocol uses 26,000, so these numbers are not "
      "directly comparable with the papers'"
    )
  return evaluate_images(samples.astype(np.float32), inception_weights), samples
