r"""Inverse problems on digits: a trained DGN as the prior vs Deep Image Prior, one table.

  python -m jgen.compare_inverse --config=configs/compare_inverse.py --workdir=runs/inverse
  python -m jgen.compare_inverse --config=configs/compare_inverse.py:runlocal --workdir=W

Trains (or resumes) the DGN prior under W/dgn_prior, degrades held-out and training digits
(denoise, inpaint, superres), restores them with the prior (z, then z and G) and with Deep
Image Prior, and writes W/table.md, W/table.json and W/examples_<group>_<task>.png
(jgen/studies/inverse_comparison.py). Prints the table's path.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from jgen.core import config as config_lib
from jgen.studies import inverse_comparison


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config, work_dir = flags.FLAGS.config, flags.FLAGS.workdir
  if config is None or not work_dir:
    print("jgen.compare_inverse: --config and --workdir are required", file=sys.stderr)
    sys.exit(1)
  config_lib.setup_logging()
  try:
    inverse_comparison.run_study(config, work_dir)
  except (ValueError, RuntimeError) as error:
    print(f"jgen.compare_inverse: error: {error}", file=sys.stderr)
    sys.exit(1)
  print(f"table: {os.path.join(work_dir, inverse_comparison.REPORT_FILE)}")


if __name__ == "__main__":
  # Defined here, not at import: tests import this module beside other tools' flags.
  config_flags.DEFINE_config_file("config", None, "Comparison config file.")
  flags.DEFINE_string("workdir", None, "Output directory.")
  app.run(main, flags_parser=config_lib.flags_parser("jgen.compare_inverse"))
