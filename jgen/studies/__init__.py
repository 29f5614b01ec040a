"""Studies: grids and comparisons of many runs, chosen by name like trainers.

A study is one module here, named as the study, which a config names in `study_kind`
(default "sampling_order"), so adding a study adds no line anywhere else; `names()` lists them.
Each has `run_study(config, workdir) -> report` and `REPORT_FILE`, the report's name under the
workdir. The modules in KIT are not studies: runner.py (a grid's axes, its resumable cells, the
study's record), stats.py (each member's outcome, intervals and tests), effects.py (a within-seed
design's trend test, effect sizes and power), sensitivity.py (best rate, basin and spread of the
optimizer study), speed.py (the library of `python -m jgen.benchmark`), and the text and plots
of three studies' reports (inverse_report.py, order_trend_report.py, recovery_report.py).

Studies may import trainers and everything below them; nothing in the library imports a
study. Only the commands (jgen.study, jgen.compare_inverse, jgen.benchmark) import this package.
"""

import importlib
import pkgutil

from jgen.core import registry

DEFAULT = "sampling_order"
KIT = (
  "effects",
  "inverse_report",
  "order_trend_report",
  "recovery_report",
  "runner",
  "sensitivity",
  "speed",
  "stats",
)


def names() -> list[str]:
  """Every study's name: the modules of this package outside KIT."""
  return sorted(module.name for module in pkgutil.iter_modules(__path__) if module.name not in KIT)


def get_study(name: str):
  """The study module; it has `run_study(config, workdir)` and `REPORT_FILE`."""
  table = {study: f"{__name__}.{study}" for study in names()}
  return importlib.import_module(registry.choose("study", name, table))


def study_name(config) -> str:
  """The study a config asks for in `study_kind` (without one, the sampling-order study)."""
  return config.get("study_kind", DEFAULT)
