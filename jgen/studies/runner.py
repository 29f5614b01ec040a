"""A study's grid of cells, run resumably: each cell is an ordinary run under W/cells/NAME/.

A cell ends by writing W/cells/NAME/outcome.json (atomically), and a cell with an outcome is
never rerun; an interrupted cell resumes from its own checkpoint, as any run does. After every
cell the study's report is rebuilt from the outcomes so far, so a long study can be read while
it runs.

W/study_config.json records the study's config. A rerun with another config is refused, naming
the keys, as a run's is (jgen/run/workdir.py): its new cells would be trained otherwise than the
finished ones, and the report would compare them. Only keys that cannot change a cell's results
may change: how many checkpoints a cell keeps and how many steps one dispatch runs (every
`*.train.keep_checkpoints`, `*.train.steps_per_dispatch`), and the keys each study names in its
RESUMABLE_CHANGES, which only choose the cells of the grid or shape the report. A run's other
resumable keys are not among them: `train.num_steps` does not continue a finished cell, and
`train.log_every`, `train.eval_every` and `train.checkpoint_every` set the rows (every checkpoint
step is logged) that a cell's outcome and its collapse detectors read.

SIGTERM and SIGINT are one request for the whole study: a cell's run that gets one stops after
its chunk with a checkpoint, as any run does; one that arrives after the cell's last check (its
last chunk, its final evaluation) stops the study once the cell's outcome and the report are
written (unless no cell is left: then the study has simply finished). Either way the study
raises signals.StopRequested (exit 75 from the command).
"""

import json
import os
import time
from collections.abc import Callable, Collection, Sequence

from absl import logging

from jgen.core import jsonl
from jgen.run import schedule, signals, workdir

CONFIG_FILE = "study_config.json"
# Suffixes of the keys that may change in any study: they never change what a cell computes.
UNCHANGED_RESULTS = ("train.keep_checkpoints", "train.steps_per_dispatch")
MAX_NAMED_DIFFERENCES = 6  # keeps the refusal one readable line


def write_json(path: str, value, **dump_args) -> None:
  """Writes atomically (jgen/core/jsonl.py), so a crash never leaves half a file at `path`."""
  write_text(path, json.dumps(value, **dump_args))


def write_text(path: str, text: str) -> None:
  """A report or table, replaced atomically: a crash leaves the old one or the new one."""
  jsonl.replace_bytes(path, text.encode())


def _is_resumable(key: str, resumable: Collection[str]) -> bool:
  if key.endswith(UNCHANGED_RESULTS):
    return True
  return any(key == name or key.startswith(f"{name}.") for name in resumable)


def config_differences(old: dict, new: dict, resumable: Collection[str] = ()) -> list[str]:
  """'key: old -> new' for every key that differs (or exists in only one), except resumable
  ones: the keys in `resumable`, anything under them, and UNCHANGED_RESULTS."""
  old_flat, new_flat = workdir.flatten(old), workdir.flatten(new)
  return [
    f"{key}: {old_flat.get(key, '<absent>')!r} -> {new_flat.get(key, '<absent>')!r}"
    for key in sorted(set(old_flat) | set(new_flat))
    if not _is_resumable(key, resumable) and old_flat.get(key) != new_flat.get(key)
  ]


def check_config(work_dir: str, config, resumable: Collection[str] = ()) -> None:
  """Refuses to go on with a study in `work_dir` that was started with another config; then
  records `config` as the study's (keys in `resumable` may have changed)."""
  path = os.path.join(work_dir, CONFIG_FILE)
  # As JSON reads it back: tuples become lists, and a tuple is not a changed value.
  new = json.loads(json.dumps(config.to_dict()))
  if os.path.exists(path):
    try:
      with open(path, "rb") as f:
        old = json.loads(f.read())
      if not isinstance(old, dict):
        raise ValueError(f"a JSON {type(old).__name__}, not an object")
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError (binary), not an object
      raise ValueError(
        f"{path} is damaged ({error}); it records the config this study's cells were trained "
        "with, so the study cannot be resumed safely: restore it, or delete it to resume with "
        "the current config"
      ) from None
    differences = config_differences(old, new, resumable)
    if differences:
      named = "; ".join(differences[:MAX_NAMED_DIFFERENCES])
      if len(differences) > MAX_NAMED_DIFFERENCES:
        named += f"; and {len(differences) - MAX_NAMED_DIFFERENCES} more"
      raise ValueError(
        f"{path} records another config for this study ({named}), so it cannot be resumed: "
        "its cells would not all be trained alike. Use a new --workdir, or undo the change"
      )
  elif os.path.isdir(os.path.join(work_dir, "cells")):
    logging.warning(
      "%s is missing (a study started before jgen recorded its config, or the file was "
      "deleted): cells finished with another config cannot be told apart; recording this one.",
      path,
    )
  write_json(path, new, indent=1, sort_keys=True)


def _read_outcome(path: str, keys: Collection[str]) -> dict | None:
  """The cell's outcome, or None (the cell runs again) if the file is damaged."""
  try:
    with open(path, "rb") as f:
      outcome = json.loads(f.read())
    if not isinstance(outcome, dict):
      raise ValueError(f"a JSON {type(outcome).__name__}, not an object")
    missing = [key for key in keys if key not in outcome]
    if missing:
      raise ValueError(f"it lacks {', '.join(map(repr, missing))}")
  except ValueError as error:  # JSONDecodeError, UnicodeDecodeError (binary), the checks above
    logging.warning("%s is damaged (%s); the cell runs again from its checkpoints.", path, error)
    return None
  return outcome


def run_cells(
  work_dir: str,
  grid: Sequence[dict],
  configs: Sequence,
  train_cell: Callable[[dict, object, str], dict],
  write_report: Callable[[list[tuple[dict, dict]]], dict],
  label: str,
  *,
  study_config,
  resumable: Collection[str] = (),
  outcome_keys: Collection[str] = (),
) -> dict:
  """Runs `train_cell(cell, config, cell_dir) -> outcome` for every cell without an outcome.json;
  after each cell calls `write_report([(cell, outcome), ...])` and returns its last answer.

  `study_config` is checked against the one recorded in W/study_config.json (`resumable`: the
  study's keys that may change); an outcome.json that is not a JSON object holding every key of
  `outcome_keys` is damaged, and its cell runs again."""
  os.makedirs(work_dir, exist_ok=True)
  check_config(work_dir, study_config, resumable)
  finished, times, report = [], [], {}
  with signals.StopRequests() as stops:  # the cells' runs share its request (jgen/run/signals.py)
    for index, (cell, run_config) in enumerate(zip(grid, configs, strict=True)):
      cell_dir = os.path.join(work_dir, "cells", cell["name"])
      outcome_path = os.path.join(cell_dir, "outcome.json")
      outcome = _read_outcome(outcome_path, outcome_keys) if os.path.exists(outcome_path) else None
      if outcome is None:
        left = len(grid) - index
        eta = schedule.format_seconds(left * sum(times) / len(times)) if times else "?"
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
      if stops.signal_name is not None and len(finished) < len(grid):
        raise signals.StopRequested(
          f"stopped by {stops.signal_name} after cell {len(finished)} of {len(grid)} "
          f"({cell['name']}): its outcome is saved in {outcome_path}; rerun the same command to "
          "resume"
        )
  return report
