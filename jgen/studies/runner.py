"""A study's grid of cells, run resumably: each cell is an ordinary run under W/cells/NAME/.

A cell ends by writing W/cells/NAME/outcome.json (atomically), and a cell with an outcome is
never rerun; an interrupted cell resumes from its own checkpoint, as any run does. After every
cell the study's report is rebuilt from the outcomes so far, so a long study can be read while
it runs.
"""

import json
import os
import time
from collections.abc import Callable, Sequence

from absl import logging

from jgen.run import schedule


def write_json(path: str, value, **dump_args) -> None:
  """Writes through a temporary file, so a crash never leaves half a file at `path`."""
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, **dump_args)
  os.replace(path + ".tmp", path)


def run_cells(
  work_dir: str,
  grid: Sequence[dict],
  configs: Sequence,
  train_cell: Callable[[dict, object, str], dict],
  write_report: Callable[[list[tuple[dict, dict]]], dict],
  label: str,
) -> dict:
  """Runs `train_cell(cell, config, cell_dir) -> outcome` for every cell without an outcome.json;
  after each cell calls `write_report([(cell, outcome), ...])` and returns its last answer."""
  os.makedirs(work_dir, exist_ok=True)
  finished, times, report = [], [], {}
  for index, (cell, run_config) in enumerate(zip(grid, configs, strict=True)):
    cell_dir = os.path.join(work_dir, "cells", cell["name"])
    outcome_path = os.path.join(cell_dir, "outcome.json")
    if not os.path.exists(outcome_path):
      eta = schedule.format_seconds((len(grid) - index) * sum(times) / len(times)) if times else "?"
      logging.info("%s cell %d/%d %s (ETA %s).", label, index + 1, len(grid), cell["name"], eta)
      started = time.perf_counter()
      write_json(outcome_path, train_cell(cell, run_config, cell_dir))
      times.append(time.perf_counter() - started)
    with open(outcome_path) as f:
      finished.append((cell, json.load(f)))
    report = write_report(finished)
    logging.info("%s: %d/%d cells done.", label, len(finished), len(grid))
  return report
