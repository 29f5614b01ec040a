r"""Mode-collapse metrics (PacGAN protocol) of samples from any codebase.

  python -m jgen.evaluate --data=ring8 --samples=samples.npy [--plot=samples.png]

`samples.npy` holds a float array [n, 2]; the published protocol uses n = 2,500.
Prints one JSON object on stdout; errors go to stderr with a non-zero exit.
"""

import json
import os
import sys

import jax
import numpy as np
from absl import app, flags

from jgen import registry
from jgen.data import mixtures
from jgen.evals import modes

_DATA = flags.DEFINE_string("data", None, "Mixture the samples imitate: ring8 or grid25.")
_SAMPLES = flags.DEFINE_string("samples", None, "A .npy file holding float samples [n, 2].")
_PLOT = flags.DEFINE_string("plot", None, "Optionally also write a scatter plot PNG here.")
flags.mark_flags_as_required(["data", "samples"])


class EvaluateError(Exception):
  """A problem with the user's input, reported as one line without a traceback."""


def load_samples(path: str) -> np.ndarray:
  """Reads and validates samples [n, 2] from a .npy file, or raises EvaluateError."""
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
    raise EvaluateError(f"{path} is a .npz archive; save one array [n, 2] with np.save")
  if samples.dtype.kind not in "iuf":
    raise EvaluateError(f"samples must be real numbers, got dtype {samples.dtype} in {path}")
  if samples.ndim != 2 or samples.shape[1] != 2:
    raise EvaluateError(f"samples must have shape [n, 2], got {list(samples.shape)} in {path}")
  if samples.shape[0] == 0:
    raise EvaluateError(f"{path} holds no samples (shape [0, 2])")
  finite_N = np.isfinite(samples).all(axis=1)
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
  except registry.UnknownNameError as e:
    raise EvaluateError(str(e)) from None


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


def main(argv):
  if len(argv) > 1:
    print(f"jgen.evaluate: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    return 2
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
