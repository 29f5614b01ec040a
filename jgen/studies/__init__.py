"""Studies: grids and comparisons of many runs, chosen by name like trainers.

A study config names its study in `study_kind` (default "sampling_order"):
  sampling_order      does the order of data decide collapse? (sampling_order.py)
  dgn_zdim            how small can a DGN's z be? (zsweep.py)
  inverse_comparison  DGN prior vs Deep Image Prior (and a denoising prior) on degraded digits
                      (inverse_comparison.py)
  optimizer_sensitivity  which generator family is insensitive to the optimizer?
                      (optimizer_sensitivity.py)
  pacgan_table1       PacGAN's Table 1 beside the published values (table1.py)
speed.py is the library of `python -m jgen.benchmark` (not a study chosen by name).
Each study module has `run_study(config, workdir) -> report` and `REPORT_FILE`, the report's
name under the workdir. stats.py holds their statistics and runner.py their resumable cells.

Studies may import trainers and everything below them; nothing in the library imports a
study. Only the commands (jgen.study, jgen.compare_inverse, jgen.benchmark) import this package.
"""

import importlib

from jgen.core import registry

DEFAULT = "sampling_order"
_STUDIES = {
  "sampling_order": "jgen.studies.sampling_order",
  "dgn_zdim": "jgen.studies.zsweep",
  "inverse_comparison": "jgen.studies.inverse_comparison",
  "optimizer_sensitivity": "jgen.studies.optimizer_sensitivity",
  "pacgan_table1": "jgen.studies.table1",
}


def get_study(name: str):
  """The study module; it has `run_study(config, workdir)` and `REPORT_FILE`."""
  return importlib.import_module(registry.choose("study", name, _STUDIES))


def study_name(config) -> str:
  """The study a config asks for (configs without `study_kind` are the sampling-order study)."""
  return config.get("study_kind", DEFAULT)
