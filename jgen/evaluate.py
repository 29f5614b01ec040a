r"""Mode-collapse metrics (PacGAN / VEEGAN protocols) of samples from any codebase.

  python -m jgen.evaluate --data=ring8 --samples=samples.npy [--plot=samples.png]
  python -m jgen.evaluate --data=stacked_digits --samples=images.npy [--plot=grid.png] \
    [--inception_weights=inception_fid.npz]

For ring8 and grid25, `samples.npy` holds a float array [n, 2]; the protocol uses n = 2,500.
For stacked_digits it holds float images [n, 8, 8, 3] in [0, 1], channel c one digit
(scikit-learn's digits / 16 are such images); the protocol uses n = 26,000. The row has
`modes` (of 1,000), `kl` = KL(p_gen || p_data), and feature metrics on jgen's digit
classifier's features (`classifier_fid`, ...: not Inception metrics), against 26,000 real
images drawn with a fixed key (jgen/evals/from_files.py).
With --inception_weights (images only; made once by `python -m jgen.inception_weights`) the row
also has `inception_fid`, the standard FID on the FID Inception-v3's pool3 features
(jgen/evals/inception.py), against the same real images. At ~6 GFLOP per image that is hours on
a CPU for 26,000 + 26,000 images: JAX_PLATFORMS=cuda runs it on a GPU.

A saved checkpoint is scored after training, apart from the run (score_sde's evaluation mode),
by named evaluators (jgen/datasets/evaluators.py) drawing through the trainer's own sampling
call, the same for a GAN, a denoiser or flow matching:
  python -m jgen.evaluate --workdir=W --evals=mixture,precision_recall,memorization \
    [--num_samples=2500]
`--evals` lists types, or name=type pairs; the row has `step`, `state_digest` and each
evaluator's metrics as "<name>/<metric>".
Prints one JSON object on stdout; errors go to stderr with a non-zero exit.
"""

import json
import os
import sys

from absl import flags

from jgen.core import cli
from jgen.evals import from_files


def define_flags() -> None:
  flags.DEFINE_string(
    "data",
    None,
    "What the samples imitate: ring8, grid25 (points) or stacked_digits (images).",
  )
  flags.DEFINE_string(
    "samples",
    None,
    "A .npy file: float samples [n, 2], or images [n, 8, 8, 3] in [0, 1].",
  )
  flags.DEFINE_string(
    "workdir", None, "Instead of --data/--samples: a run's workdir whose checkpoint to score."
  )
  flags.DEFINE_string(
    "evals",
    "",
    "With --workdir: evaluator types (or name=type), comma-separated: mixture, images, "
    "classifier_fd, precision_recall, memorization, inception_fid.",
  )
  flags.DEFINE_integer("num_samples", 2500, "With --workdir: samples each evaluator draws.")
  flags.DEFINE_string("plot", None, "Optionally also write a scatter plot PNG here.")
  flags.DEFINE_string(
    "inception_weights",
    "",
    "Images only: also the standard Inception FID (`inception_fid`) with these FID Inception "
    "weights (.npz from python -m jgen.inception_weights). Empty: off.",
  )


def _note(text: str) -> None:
  print(f"jgen.evaluate: note: {text}", file=sys.stderr)


def main() -> None:
  FLAGS = flags.FLAGS
  if FLAGS.workdir:
    from jgen.trainers import scoring

    row = scoring.score_checkpoint(
      FLAGS.workdir, scoring.parse_evals(FLAGS.evals, FLAGS.num_samples)
    )
    print(json.dumps(row, allow_nan=False), flush=True)
    return
  if not FLAGS.data or not FLAGS.samples:
    raise ValueError("give --data and --samples (samples from files), or --workdir (a checkpoint)")
  row, samples = from_files.evaluate_file(FLAGS.data, FLAGS.samples, FLAGS.inception_weights, _note)
  print(json.dumps(row, allow_nan=False), flush=True)
  if FLAGS.plot:
    from jgen.viz import plots  # matplotlib only when a plot is asked for: it is slow to import

    plots.evaluation_plot(FLAGS.plot, FLAGS.data, samples, os.path.basename(FLAGS.samples), row)


if __name__ == "__main__":
  cli.run(main, define_flags, quiet=True)
