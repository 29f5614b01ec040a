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

from jgen.core import jsonl
from jgen.run import schedule


def write_json(path: str, value, **dump_args) -> None:
  """Writes atomically (jgen/core/jsonl.py), so a crash never leaves half a file at `path`."""
  write_text(path, json.dumps(value, **dump_args))


def write_text(path: str, text: str) -> None:
  """A report or table, replaced atomically: a crash leaves the old one or the new one."""
  jsonl.replace_bytes(path, text.encode())


def _read_outcome(path: str) -> dict | None:
  """The cell's outcome, or None (the cell runs again) if the file is damaged."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as error:
    logging.warning("%s is damaged (%s); the cell runs again from its checkpoints.", path, error)
    return None


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
    outcome = _read_outcome(outcome_path) if os.path.exists(outcome_path) else None
    if outcome is None:
      eta = schedule.format_seconds((len(grid) - index) * sum(times) / len(times)) if times else "?"
      logging.info("%s cell %d/%d %s (ETA %s).", label, index + 1, len(grid), cell["name"], eta)
      started = time.perf_counter()
      outcome = train_cell(cell, run_config, cell_dir)
      write_json(outcome_path, outcome)
      # As read back: JSON turns tuples into lists, and reports see one form either way.
      outcome = json.loads(json.dumps(outcome))
      times.append(time.perf_counter() - started)
    finished.append((cell, outcome))
    report = write_report(finished)
    logging.info("%s: %d/%d cells done.", label, len(finished), len(grid))
  return report
