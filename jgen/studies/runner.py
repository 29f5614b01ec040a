"""The kit every study is built from: its grid's axes, its cells run resumably, its record.

A study's config lists each axis of its grid as comma-separated names or numbers under
`study.<axis>` (so `--config.study.samplers=a,b` works on the command line); `axis` parses one.
Each cell of the grid is an ordinary run under W/cells/NAME/ (`run_cells`). A cell ends by
writing W/cells/NAME/outcome.json (atomically), and a cell with an outcome is never rerun; an
interrupted cell resumes from its own checkpoint, as any run does. After every cell the study's
report is rebuilt from the outcomes so far, so a long study can be read while it runs.

W/study_config.json records the study's config. A rerun with another config is refused, naming
the keys, as a run's is (jgen/run/workdir.py): its new cells would be trained otherwise than the
finished ones, and the report would compare them. Only keys that cannot change a cell's results
may change: how many checkpoints a cell keeps and how many steps one dispatch runs (every
`*.train.keep_checkpoints`, `*.train.steps_per_dispatch`), and the keys each study names in its
RESUMABLE_CHANGES, which only choose the cells of the grid or shape the report. A run's other
resumable keys are not among them: `train.num_steps` does not continue a finished cell, and
`train.log_every`, `train.eval_every` and `train.checkpoint_every` set the rows (every checkpoint
step is logged) that a cell's outcome and its collapse detectors read. A key the record lacks
is no change when every cell on disk was trained with exactly the config the study gives it now
(its W/cells/NAME/config.json): what the cells were trained with is what the record must show.

SIGTERM and SIGINT are one request for the whole study: a cell's run that gets one stops after
its chunk with a checkpoint, as any run does; one that arrives after the cell's last check (its
last chunk, its final evaluation) stops the study once the cell's outcome and the report are
written (unless no cell is left: then the study has simply finished). Either way the study
raises signals.StopRequested (exit 75 from the command).
"""

import json
import math
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence

import ml_collections
from absl import logging

from jgen import trainers
from jgen.core import config as config_lib
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


def save_report(work_dir: str, report: dict, markdown: str, report_file: str) -> None:
  """A study's report as W/report.json (strict JSON: no NaN) and W/<report_file>, each replaced
  atomically."""
  write_json(os.path.join(work_dir, "report.json"), report, indent=1, allow_nan=False)
  write_text(os.path.join(work_dir, report_file), markdown)


def axis(
  config, path: str, valid: Collection[str] | None = None, number: type | None = None
) -> list:
  """The values of a grid axis, the comma-separated list at `path` in `config` ("study.samplers",
  so that `--config.study.samplers=a,b` sets it): names (each one of `valid`, when given) or,
  with `number` (int or float), numbers > 0. An empty list, a value listed twice, an unknown
  name or a bad number is a ValueError naming the key."""
  text = config
  for key in path.split("."):
    text = text[key]
  items = [item.strip() for item in str(text).split(",") if item.strip()]
  if not items:
    raise ValueError(f"{path} is empty; give a comma-separated list")
  if number is not None:
    try:
      values = [number(item) for item in items]
    except ValueError:
      values = []
    if not values or not all(math.isfinite(value) and value > 0 for value in values):
      raise ValueError(f"{path} must be comma-separated {number.__name__} values > 0, got {text!r}")
  else:
    values = items
    unknown = [name for name in values if valid is not None and name not in valid]
    if unknown:
      raise ValueError(f"{path}: unknown {unknown}; valid: {', '.join(valid)}")
  repeated = sorted({str(value) for value in values if values.count(value) > 1})
  if repeated:
    raise ValueError(f"{path} lists {', '.join(repeated)} more than once, got {text!r}")
  return values


def cell_config(base, *settings: Mapping) -> ml_collections.ConfigDict:
  """A locked copy of the run config `base` with `settings` applied in order: dicts of the keys
  to set, nested (`{"optimizer": {"name": "sgd"}}`, as a study config holds them) or dotted
  (`{"optimizer.name": "sgd"}`). Every key must exist in `base`, and keeps its type."""
  run = ml_collections.ConfigDict(base.to_dict())
  for setting in settings:
    tree = setting.to_dict() if isinstance(setting, ml_collections.ConfigDict) else dict(setting)
    for path, value in workdir.flatten(tree).items():
      config_lib.apply_override(run, f"{path}={value}")
  run.lock()
  return run


def train(run_config, cell_dir: str) -> dict:
  """Trains (or resumes) one cell's run in `cell_dir` with the trainer its config names; returns
  its final row."""
  return trainers.get_trainer(run_config.trainer).train_and_evaluate(run_config, cell_dir)


def _is_resumable(key: str, resumable: Collection[str]) -> bool:
  if key.endswith(UNCHANGED_RESULTS):
    return True
  return any(key == name or key.startswith(f"{name}.") for name in resumable)


def _differing_keys(old: dict, new: dict, resumable: Collection[str]) -> list[str]:
  # A key added since `old` was recorded counts as what `old`'s run did (workdir.ADDED_KEYS).
  old_flat, new_flat = workdir.comparable(workdir.flatten(old), workdir.flatten(new))
  return [
    key
    for key in sorted(set(old_flat) | set(new_flat))
    if not _is_resumable(key, resumable) and old_flat.get(key) != new_flat.get(key)
  ]


def config_differences(old: dict, new: dict, resumable: Collection[str] = ()) -> list[str]:
  """'key: old -> new' for every key that differs (or exists in only one), except resumable
  ones: the keys in `resumable`, anything under them, and UNCHANGED_RESULTS."""
  old_flat, new_flat = workdir.comparable(workdir.flatten(old), workdir.flatten(new))
  return [
    f"{key}: {old_flat.get(key, '<absent>')!r} -> {new_flat.get(key, '<absent>')!r}"
    for key in _differing_keys(old, new, resumable)
  ]


def _as_json(config) -> dict:
  # As JSON reads it back: tuples become lists, and a tuple is not a changed value.
  return json.loads(json.dumps(config.to_dict()))


def _cells_trained_otherwise(work_dir: str, cell_configs: Mapping[str, object]) -> list[str]:
  """'NAME (why)' for every cell on disk (an outcome or a run in W/cells/NAME/) whose recorded
  run config is missing, damaged, or not the one in `cell_configs`."""
  found = []
  for name, run_config in cell_configs.items():
    cell_dir = os.path.join(work_dir, "cells", name)
    if not any(os.path.exists(os.path.join(cell_dir, f)) for f in ("outcome.json", "config.json")):
      continue  # nothing trained there yet
    recorded = workdir.read_config(cell_dir)
    if recorded is None:
      found.append(f"{name} (no readable config.json)")
      continue
    differences = config_differences(recorded, _as_json(run_config))
    if differences:
      found.append(f"{name} ({differences[0]})")
  return found


def check_config(
  work_dir: str,
  config,
  resumable: Collection[str] = (),
  cell_configs: Mapping[str, object] | None = None,
) -> None:
  """Refuses to go on with a study in `work_dir` that was started with another config; then
  records `config` as the study's (keys in `resumable` may have changed). Keys the record
  lacks are accepted when every cell on disk was trained with its config in `cell_configs`
  (cell name -> run config)."""
  path = os.path.join(work_dir, CONFIG_FILE)
  new = _as_json(config)
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
    unrecorded = set(workdir.flatten(new)) - set(workdir.flatten(old))
    if differences and set(_differing_keys(old, new, resumable)) <= unrecorded:
      otherwise = _cells_trained_otherwise(work_dir, cell_configs or {})
      if not otherwise:
        logging.info(
          "%s lacks %d keys of this config; every cell on disk was trained as it says, so the "
          "study resumes and the record gains them.",
          path,
          len(differences),
        )
        differences = []
      else:
        differences.insert(0, f"cells on disk trained otherwise: {', '.join(otherwise)}")
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
      "%s is missing: cells finished with another config cannot be told apart; recording this one.",
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

  `configs` holds each cell's run config (None for a cell that is not a run): every cell still
  to train is built with its trainer first, which refuses a bad setting, so a mistake in the last
  cell fails before the first one trains. `study_config` is then checked against the one
  recorded in W/study_config.json (`resumable`: the study's keys that may change). An
  outcome.json that is not a JSON object holding every key of `outcome_keys` is damaged, and its
  cell runs again."""
  os.makedirs(work_dir, exist_ok=True)
  paths = [os.path.join(work_dir, "cells", cell["name"], "outcome.json") for cell in grid]
  saved = [_read_outcome(path, outcome_keys) if os.path.exists(path) else None for path in paths]
  for outcome, run_config in zip(saved, configs, strict=True):
    if outcome is None and run_config is not None:
      trainers.get_trainer(run_config.trainer).build(run_config)
  names = [cell["name"] for cell in grid]
  check_config(work_dir, study_config, resumable, dict(zip(names, configs, strict=True)))
  finished, times, report = [], [], {}
  with signals.StopRequests() as stops:  # the cells' runs share its request (jgen/run/signals.py)
    for index, (cell, run_config) in enumerate(zip(grid, configs, strict=True)):
      outcome, outcome_path = saved[index], paths[index]
      if outcome is None:
        left = len(grid) - index
        eta = schedule.format_seconds(left * sum(times) / len(times)) if times else "?"
        logging.info("%s cell %d/%d %s (ETA %s).", label, index + 1, len(grid), cell["name"], eta)
        started = time.perf_counter()
        cell_dir = os.path.dirname(outcome_path)
        outcome = train_cell(cell, run_config, cell_dir)
        os.makedirs(cell_dir, exist_ok=True)  # a cell that is not a run may write nothing there
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
