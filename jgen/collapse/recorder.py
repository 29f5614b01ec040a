"""Collapse cases: what a run records when a detector fires, and how cases are read back.

A case is a directory WORKDIR/cases/ID/ holding everything needed to re-run the
moments before and after a collapse and check them bit for bit:

  case.json         config, seed, start/trigger/end steps, detector readings, the
                    evaluation rows of the window, versions, platform, XLA flags, commit
  checkpoints/S/    the run's checkpoint at the start step S (hard links when possible)
  trace.u32         per-step digests of indices, G params, D params for steps (S, E]
  parts.jsonl       sha256 of every part of the state at each logged step in [S, E]
  before.png, trigger.png, after.png   samples at S (or the last evaluation before), T, E
"""

import json
import os
import shutil

import ml_collections
import numpy as np
from absl import logging

from jgen.collapse import detectors
from jgen.core import jsonl
from jgen.core.environment import environment

CASE_FILE = "case.json"


def _link_tree(source: str, destination: str) -> None:
  """Hard-links a checkpoint into the case (copies across file systems)."""

  def link_or_copy(src, dst):
    try:
      os.link(src, dst)
    except OSError:
      shutil.copy2(src, dst)

  shutil.copytree(source, destination, copy_function=link_or_copy)


class CaseRecorder:
  """Watches evaluation rows; on a detector firing, opens a case and completes it later.

  An observer of the run loop (jgen/run/loop.py's Observer): a trainer's train_and_evaluate
  passes one to loop.train, which calls `start` once it has resumed, then `on_evaluation` with
  every logged row and `on_non_finite` before it stops on a non-finite loss. Its detector
  state (the reference) is rebuilt from metrics.jsonl on resume, so a resumed run records
  the same cases as an uninterrupted one.
  """

  def __init__(self):
    self.stop_reason = None
    self._enabled = False

  def start(self, session) -> None:
    """Reads what the run has recorded so far: its rows (the detectors' reference) and cases
    still being recorded. `session` is the loop's: its workdir, config, trainer, schedule,
    checkpoints and trace log."""
    config, work_dir = session.config, session.work_dir
    self._work_dir = work_dir
    self._traced_parts = session.trainer.traced_parts
    self._config = config
    self._detector_config = config.get("collapse")
    self._checkpoints = session.ckpts
    self._trace_log = session.trace_log
    self._eval_every = session.schedule.eval_every
    # Chief process, traced run, of a config with detectors.
    self._enabled = (
      session.is_chief
      and session.trainer.trace
      and "collapse" in config
      and config.collapse.enabled
    )
    self._cases_dir = os.path.join(work_dir, "cases")
    self._detector = detectors.Detector(self._detector_config) if self._enabled else None
    self._snapshots = {}  # evaluation step -> detector state after it
    metrics = session.log.path
    rows = jsonl.read_rows(metrics) if self._enabled and os.path.exists(metrics) else []
    for row in rows:  # the detector over rows before the resume
      if "modes" in row:
        self._observe(row)
    self._open = [case for case in list_cases(work_dir) if case["status"] == "recording"]

  def marked_steps(self) -> list[int]:
    """The trigger steps of the run's cases, marked on its metric curves."""
    return [case["trigger_step"] for case in list_cases(self._work_dir)]

  def _observe(self, row: dict) -> list[dict]:
    fired = self._detector.observe(row)
    self._snapshots[row["step"]] = self._detector.snapshot()
    return fired

  def _snapshot_at(self, step: int) -> dict:
    """The detector state after the last evaluation at or before `step`."""
    earlier = [s for s in self._snapshots if s <= step]
    return (
      self._snapshots[max(earlier)]
      if earlier
      else detectors.Detector(self._detector_config).snapshot()
    )

  def on_evaluation(self, row: dict, num_steps: int) -> None:
    """Call with each logged row (after its samples PNG is written); rows without mode
    readings are not evaluations the detectors can judge."""
    if not self._enabled or "modes" not in row:
      return
    fired = self._observe(row)
    if fired:
      self._open_case(row, fired, num_steps)
    step = row["step"]
    for case in [c for c in self._open if step >= c["end_step"] or step == num_steps]:
      self._complete(case, step)

  def on_non_finite(self, bad_step: int, values: dict) -> str | None:
    """Records the steps from the last checkpoint to a non-finite loss, then completes."""
    if not self._enabled:
      return None
    row = {"step": bad_step, **values}
    case = self._open_case(row, [{"detector": "non_finite", "reading": values}], bad_step)
    if case is None:  # recorded by an earlier session (completed, or stopped before that)
      case = next((c for c in self._open if c["trigger_step"] == bad_step), None)
      earlier = os.path.join(self._cases_dir, f"{bad_step:08d}-non_finite")
      if case is None:
        return earlier if os.path.isdir(earlier) else None
    self._complete(case, bad_step)
    return case["dir"]

  def _open_case(self, row, fired, num_steps) -> dict | None:
    trigger = row["step"]
    self._checkpoints.wait()
    starts = [s for s in self._checkpoints.all_steps() if s < trigger]
    if not starts:
      logging.warning("Collapse at step %d, but no checkpoint precedes it: no case.", trigger)
      return None
    start = max(starts)
    names = "+".join(sorted({f["detector"] for f in fired}))
    case_id = f"{trigger:08d}-{names}"
    case_dir = os.path.join(self._cases_dir, case_id)
    if os.path.exists(case_dir):  # reopened after a resume: keep what is there
      return None
    wanted_end = trigger + self._detector_config.after_steps
    if self._detector_config.on_trigger == "stop":
      end = trigger
      self.stop_reason = "collapse.on_trigger=stop"
    else:  # round up to an evaluation step, so the case has an "after" picture
      end = min(-(-wanted_end // self._eval_every) * self._eval_every, num_steps)
    os.makedirs(case_dir)
    _link_tree(self._checkpoints.step_dir(start), os.path.join(case_dir, "checkpoints", str(start)))
    case = {
      "id": case_id,
      "dir": case_dir,
      "status": "recording",
      "start_step": start,
      "trigger_step": trigger,
      "end_step": end,
      "detectors": fired,
      # The detectors' state at the start step: replay judges its rows from here.
      "detector_at_start": self._snapshot_at(start),
      "trigger_row": row,
      "traced_parts": list(self._traced_parts),
      "seed": self._config.seed,
      "config": self._config.to_dict(),
      "environment": environment(),
    }
    _write_case(case)
    self._open.append(case)
    logging.warning(
      "Collapse at step %d (%s): recording case %s (steps %d..%d).",
      trigger,
      names,
      case_id,
      start,
      end,
    )
    return case

  def _complete(self, case: dict, step: int) -> None:
    case_dir, start = case["dir"], case["start_step"]
    end = min(case["end_step"], step)
    trace_rows = self._trace_log.steps(start, end)
    jsonl.replace_bytes(os.path.join(case_dir, "trace.u32"), trace_rows.tobytes())
    parts = self._trace_log.parts(start - 1, end)
    if not any(row["step"] == start for row in parts):
      # A checkpoint saved by a stop between log steps has its digests in its record only.
      recorded = (self._checkpoints.record(start) or {}).get("parts")
      parts = [{"step": start, "parts": recorded}, *parts] if recorded else parts
    jsonl.replace_rows(os.path.join(case_dir, "parts.jsonl"), parts)
    metrics = os.path.join(self._work_dir, "metrics.jsonl")
    # A loss that turns non-finite before the first logged row leaves no metrics.jsonl yet.
    all_rows = jsonl.read_rows(metrics) if os.path.exists(metrics) else []
    rows = [r for r in all_rows if start <= r["step"] <= end]
    evaluated = [r["step"] for r in all_rows if "modes" in r and r["step"] <= start]
    samples = os.path.join(self._work_dir, "samples")
    pictures = {
      "before": max(evaluated, default=None),
      "trigger": case["trigger_step"],
      "after": end,
    }
    for name, at in pictures.items():
      source = os.path.join(samples, f"step_{at:08d}.png") if at is not None else None
      if source and os.path.exists(source):
        shutil.copy2(source, os.path.join(case_dir, f"{name}.png"))
    case.update(status="complete", end_step=end, rows=rows, traced_steps=len(trace_rows))
    _write_case(case)
    if case in self._open:
      self._open.remove(case)
    logging.warning("Case %s complete: %d traced steps.", case["id"], len(trace_rows))


def _write_case(case: dict) -> None:
  text = json.dumps({k: v for k, v in case.items() if k != "dir"}, indent=1, default=_jsonable)
  jsonl.replace_bytes(os.path.join(case["dir"], CASE_FILE), text.encode())


def _jsonable(value):
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f"not JSON serializable: {type(value)}")


class DamagedCaseError(ValueError):
  pass


def load_case(case_dir: str) -> dict:
  path = os.path.join(case_dir, CASE_FILE)
  if not os.path.isdir(case_dir):
    raise ValueError(f"{case_dir} is not a case: no such directory")
  if not os.path.exists(path):
    raise DamagedCaseError(f"{case_dir} is not a case: it has no {CASE_FILE}")
  try:
    with open(path) as f:
      case = json.load(f)
  except json.JSONDecodeError as error:
    raise DamagedCaseError(
      f"{path} is damaged ({error.msg} at line {error.lineno}, column {error.colno}; "
      f"truncated?): the case cannot be read; delete {case_dir} or restore the file"
    ) from None
  case["dir"] = case_dir
  return case


def case_config(case: dict) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(case["config"])
  config.lock()
  return config


# The columns of a case.json without `traced_parts`, so that such cases still replay: their
# trace holds the GAN's parts.
GAN_TRACED_PARTS = ("g_params", "d_params")


def traced_columns(case: dict) -> tuple[str, ...]:
  """The columns of the case's trace.u32 rows: step, indices, then each traced part."""
  return ("step", "indices", *case.get("traced_parts", GAN_TRACED_PARTS))


def read_trace(case: dict) -> np.ndarray:
  path = os.path.join(case["dir"], "trace.u32")
  if not os.path.exists(path):
    raise DamagedCaseError(
      f"case {case['id']} has no trace.u32 ({path}): its per-step digests are gone, so it "
      "cannot be replayed; re-record the case by rerunning its run in a new --workdir"
    )
  words = np.fromfile(path, np.uint32)
  columns = len(traced_columns(case))
  if len(words) % columns:
    raise DamagedCaseError(f"{path} is damaged: its size is not a whole number of trace rows")
  return words.reshape(-1, columns)


def list_cases(work_dir: str, damaged: list | None = None) -> list[dict]:
  """The cases of a run; a case whose case.json is damaged is left out with a warning (or its
  error appended to `damaged`), so one broken case does not block a resume."""
  cases_dir = os.path.join(work_dir, "cases")
  if not os.path.isdir(cases_dir):
    return []
  cases = []
  for name in sorted(os.listdir(cases_dir)):
    try:
      cases.append(load_case(os.path.join(cases_dir, name)))
    except DamagedCaseError as error:
      if damaged is None:
        logging.warning("%s", error)
      else:
        damaged.append(str(error))
  return cases


SUMMARY_KEYS = ("step", "modes", "reverse_kl", "diversity")


def summary(case: dict) -> dict:
  """What `python -m jgen.cases` shows of a case: its steps, triggers, before and after."""
  rows = [r for r in case.get("rows", []) if "modes" in r]
  first, last = (rows[0], rows[-1]) if rows else ({}, {})
  return {
    "id": case["id"],
    "status": case["status"],
    "steps": [case["start_step"], case["trigger_step"], case["end_step"]],
    "triggers": [
      f"{f['detector']}: {f['reading']} (reference {f.get('reference')})" for f in case["detectors"]
    ],
    "before": {k: first.get(k) for k in SUMMARY_KEYS},
    "after": {k: last.get(k) for k in SUMMARY_KEYS},
  }
