r"""Inverse problems on digits: a trained DGN as the prior vs Deep Image Prior vs a denoising
prior (DPS), one table with paired differences over digits.

  python -m jgen.compare_inverse --config=configs/compare_inverse.py --workdir=runs/inverse
  python -m jgen.compare_inverse --config=configs/compare_inverse.py:runlocal --workdir=W

The inverse-problem study under its own name: the same as `python -m jgen.study` with this
config (jgen/studies/inverse_comparison.py), which writes W/table.md, W/table.json and
W/examples_<group>_<task>.png, and resumes like any study. Prints the table's path.
"""

import os

from absl import flags

from jgen.core import cli
from jgen.studies import inverse_comparison


def define_flags() -> None:
  cli.define_config("Comparison config file.")
  cli.define_workdir("Output directory.")


def main() -> None:
  work_dir = flags.FLAGS.workdir
  inverse_comparison.run_study(flags.FLAGS.config, work_dir)
  print(f"table: {os.path.join(work_dir, inverse_comparison.REPORT_FILE)}")


if __name__ == "__main__":
  cli.run(main, define_flags)
