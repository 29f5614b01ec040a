r"""Runs a study: a grid of runs (or a comparison) and its report.

  python -m jgen.study --config=configs/study_sampling_order.py[:runlocal] --workdir=W
  python -m jgen.study --config=configs/dgn_capacity.py[:runlocal] --workdir=W
  python -m jgen.study --config=configs/compare_inverse.py[:runlocal] --workdir=W

The config's `study_kind` chooses the study (jgen/studies/__init__.py; without it, the
sampling-order study). Studies resume: a finished cell is never rerun, and the report is
rewritten after every cell. A rerun with another config is refused, naming the keys
(W/study_config.json records the study's; jgen/studies/runner.py says which keys may change).
SIGTERM or Ctrl-C stops the study after the current chunk or cell, with its checkpoint or
outcome saved: exit 75, and the same command resumes it. Prints the report's path.
"""

import os

from absl import flags

from jgen import studies
from jgen.core import cli


def define_flags() -> None:
  cli.define_config("Study config file.")
  cli.define_workdir("Study directory.")


def main() -> None:
  config, work_dir = flags.FLAGS.config, flags.FLAGS.workdir
  study = studies.get_study(studies.study_name(config))
  study.run_study(config, work_dir)
  print(f"report: {os.path.join(work_dir, study.REPORT_FILE)}")


if __name__ == "__main__":
  cli.run(main, define_flags)
