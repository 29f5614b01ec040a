r"""Mode-collapse metrics (PacGAN / VEEGAN protocols) of samples from any codebase.

  python -m jgen.evaluate --data=ring8 --samples=samples.npy [--plot=samples.png]
  python -m jgen.evaluate --data=stacked_digits --samples=images.npy [--plot=grid.png] \
    [--inception_weights=inception_fid.npz]

For ring8 and grid25, `samples.npy` holds a float array [n, 2]; the protocol uses n = 2,500.
For stacked_digits it holds float images [n, 8, 8, 3] in [0, 1], channel c one digit
(scikit-learn's digits / 16 are such images); the protocol uses n = 26,000. The row has
`modes` (of 1,000), `kl` = KL(p_gen || p_data), and feature metrics on jgen's digit
classifier's features (`classifier_fid`, ...: not Inception metrics), against 26,000 real
images drawn with a fixed key (jgen/trainers/image_eval.py).
With --inception_weights (images only; made once by `python -m jgen.inception_weights`) the row
also has `inception_fid`, the standard FID on the FID Inception-v3's pool3 features
(jgen/evals/inception.py), against the same real images. At ~6 GFLOP per image that is hours on
a CPU for 26,000 + 26,000 images: JAX_PLATFORMS=cuda runs it on a GPU.
Prints one JSON object on stdout; errors go to stderr with a non-zero exit.
"""

import json
import os
import sys

import jax
import ml_collections
import numpy as np
from absl import app, flags

from jgen.core import registry
from jgen.data import mixtures
from jgen.evals import modes

_DATA = flags.DEFINE_string(
  "data", None, "What the samples imitate: ring8, grid25 (points) or stacked_digits (images)."
)
_SAMPLES = flags.DEFINE_string(
  "samples", None, "A .npy file: float samples [n, 2], or images [n, 8, 8, 3] in [0, 1]."
)
_PLOT = flags.DEFINE_string("plot", None, "Optionally also write a scatter plot PNG here.")
_INCEPTION_WEIGHTS = flags.DEFINE_string(
  "inception_weights",
  "",
  "Images only: also the standard Inception FID (`inception_fid`) with these FID Inception "
  "weights (.npz from python -m jgen.inception_weights). Empty: off.",
)
flags.mark_flags_as_required(["data", "samples"])


class EvaluateError(Exception):
  """A problem with the user's input, reported as one line without a traceback."""


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
  return samples


def get_mixture(data: str) -> mixtures.Mixture:
  try:
    return mixtures.get_mixture(data)
  except registry.UnknownNameError:
    valid = ", ".join(sorted([*mixtures.MIXTURES, "stacked_digits"]))
    raise EvaluateError(f"unknown data {data!r}; valid choices: {valid}") from None


def evaluate(samples_Nx2: np.ndarray, mixture: mixtures.Mixture) -> dict:
  """The JSON row the CLI prints."""
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
  from jgen.data import stacked
  from jgen.evals import digit_classifier, image_eval, images

  data = stacked.stacked_digits()
  eval_config = ml_collections.ConfigDict(IMAGE_EVAL)
  real = image_eval.reference_images(data, stacked.PROTOCOL_NUM_SAMPLES)
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


# The evaluation settings of configs/stacked_digits_gan.py (pinned; docs/images.md).
IMAGE_EVAL = {
  "feature_samples": 5000,
  "kid_subset_size": 1000,
  "kid_subsets": 20,
  "birthday_batch": 100,
  "birthday_batches": 200,
  "birthday_quantile": 0.01,
}


def _main_images(path: str, inception_weights: str = "") -> int:
  from jgen.data import stacked

  try:
    samples = load_samples(path, (8, 8, 3))
  except EvaluateError as e:
    print(f"jgen.evaluate: error: {e}", file=sys.stderr)
    return 1
  if samples.min() < 0 or samples.max() > 1:
    print(
      f"jgen.evaluate: error: images must hold values in [0, 1], got [{samples.min()}, "
      f"{samples.max()}] in {path} (scikit-learn's digits: divide by 16)",
      file=sys.stderr,
    )
    return 1
  if "JAX_PLATFORMS" not in os.environ:
    jax.config.update("jax_platforms", "cpu")
  if inception_weights:
    from jgen.evals import inception

    try:
      inception.load_inception(inception_weights)  # a bad file fails now, not after the metrics
    except inception.InceptionWeightsError as e:
      print(f"jgen.evaluate: error: {e}", file=sys.stderr)
      return 1
    print(
      f"jgen.evaluate: note: Inception features of {stacked.PROTOCOL_NUM_SAMPLES} real and "
      f"{samples.shape[0]} generated images on {jax.default_backend()} (~6 GFLOP each)",
      file=sys.stderr,
    )
  if samples.shape[0] != stacked.PROTOCOL_NUM_SAMPLES:
    print(
      f"jgen.evaluate: note: {samples.shape[0]} samples; the protocol uses 26,000, so these "
      "numbers are not directly comparable with the papers'",
      file=sys.stderr,
    )
  row = evaluate_images(samples.astype(np.float32), inception_weights)
  print(json.dumps(row, allow_nan=False), flush=True)
  if _PLOT.value:
    from jgen.viz import plots

    try:
      plots.image_grid(_PLOT.value, samples, os.path.basename(path), row)
    except OSError as e:
      print(f"jgen.evaluate: error: cannot write plot {_PLOT.value} ({e})", file=sys.stderr)
      return 1
  return 0


def main(argv):
  if len(argv) > 1:
    print(f"jgen.evaluate: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    return 2
  if _DATA.value == "stacked_digits":
    return _main_images(_SAMPLES.value, _INCEPTION_WEIGHTS.value)
  if _INCEPTION_WEIGHTS.value:
    print(
      "jgen.evaluate: error: --inception_weights applies to images (--data=stacked_digits), "
      f"not to {_DATA.value!r}",
      file=sys.stderr,
    )
    return 1
  try:
    mixture = get_mixture(_DATA.value)
    samples_Nx2 = load_samples(_SAMPLES.value)
  except EvaluateError as e:
    print(f"jgen.evaluate: error: {e}", file=sys.stderr)
    return 1
  if "JAX_PLATFORMS" not in os.environ:
    # 2,500 points need no accelerator, and on a TPU host a running training job holds the chips.
    jax.config.update("jax_platforms", "cpu")
  n = samples_Nx2.shape[0]
  if n != modes.PROTOCOL_NUM_SAMPLES:
    print(
      f"jgen.evaluate: note: {n} samples; the published protocol uses 2,500, "
      "so these numbers are not directly comparable with the papers'",
      file=sys.stderr,
    )
  row = evaluate(samples_Nx2, mixture)
  print(json.dumps(row, allow_nan=False), flush=True)
  if _PLOT.value:
    from jgen import plots  # matplotlib only when a plot is asked for: it is slow to import

    try:
      plots.scatter_samples(
        _PLOT.value, samples_Nx2, mixture, os.path.basename(_SAMPLES.value), row
      )
    except OSError as e:
      print(f"jgen.evaluate: error: cannot write plot {_PLOT.value} ({e})", file=sys.stderr)
      return 1
  return 0


if __name__ == "__main__":
  app.run(main)
