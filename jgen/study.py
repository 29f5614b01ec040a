r"""Runs a study: a grid of runs (or a comparison) and its report.

  python -m jgen.study --config=configs/study_sampling_order.py[:runlocal] --workdir=W
  python -m jgen.study --config=configs/dgn_zdim.py[:runlocal] --workdir=W

The config's `study_kind` chooses the study (jgen/studies/__init__.py lists them; without it,
the sampling-order study). Studies resume: a finished cell is never rerun, and the report is
rewritten after every cell. Prints the report's path.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from jgen import studies
from jgen.core import config as config_lib


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config, work_dir = flags.FLAGS.config, flags.FLAGS.workdir
  if config is None or not work_dir:
    print("jgen.study: --config and --workdir are required", file=sys.stderr)
    sys.exit(1)
  config_lib.setup_logging()
  try:
    study = studies.get_study(studies.study_name(config))
    study.run_study(config, work_dir)
  except (ValueError, RuntimeError) as error:
    print(f"jgen.study: error: {error}", file=sys.stderr)
    sys.exit(1)
  print(f"report: {os.path.join(work_dir, study.REPORT_FILE)}")


if __name__ == "__main__":
  # Defined here, not at import: tests import this module beside other tools' flags.
  config_flags.DEFINE_config_file("config", None, "Study config file.")
  flags.DEFINE_string("workdir", None, "Study directory.")
  app.run(main, flags_parser=config_lib.flags_parser("jgen.study"))
