"""Orbax checkpoints of the train state under WORKDIR/checkpoints, verified on restore.

WORKDIR/checkpoints/S/                 orbax's checkpoint of step S
WORKDIR/checkpoints/S.digests.json     written with it: the sha256 of each part of the state
                                       (jgen.run.trace.part_digests) and the run's
                                       fingerprint (jgen/run/fingerprint.py)
WORKDIR/checkpoints/S.window.npz       only after a stop at a step that is not a log step: the
                                       metrics of the steps since the last row (written
                                       atomically, checked with the checkpoint)
WORKDIR/damaged_checkpoints/S/         a checkpoint that could not be read or failed its
                                       digests (or its window, or its fingerprint, was
                                       damaged), set aside (never deleted) by a resume

A restore checks the state against the digests recorded when it was saved (or, for a
checkpoint saved without a digests file, against trace/parts.jsonl's digests of that step)
and falls back to the newest intact checkpoint, saying so in one line per damaged one. A
workdir that holds a run's history but no checkpoint to resume it is refused, untouched.
Saves are asynchronous; a failure is raised by `check` (called after every chunk) in one line,
with the last good checkpoint named.
"""

import io
import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jgen.core import jsonl
from jgen.run import save_noise, trace
from jgen.run import workdir as workdir_lib

DIGESTS_SUFFIX = ".digests.json"
WINDOW_SUFFIX = ".window.npz"  # written by the loop when a signal stops a run between rows
DAMAGED_DIR = "damaged_checkpoints"


class CheckpointError(RuntimeError):
  pass


def _one_line(error: BaseException) -> str:
  # orbax wraps TensorStore's error (which names the file and what is wrong with it) in one that
  # prints the store's spec, a bound method's repr.
  while error.__cause__ is not None:
    error = error.__cause__
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


def steps_on_disk(work_dir: str) -> list[int]:
  """The steps of the finished checkpoints in WORKDIR/checkpoints, read without orbax (orbax
  writes a checkpoint under a temporary name and renames it to its step when it is whole)."""
  try:
    names = os.listdir(os.path.join(work_dir, "checkpoints"))
  except OSError:
    return []
  return sorted(int(name) for name in names if name.isdigit())


def _history_error(work_dir: str, why: str) -> "CheckpointError | None":
  files, last = workdir_lib.history(work_dir)
  if not files:
    return None
  through = f" through step {last}" if last is not None else ""
  return CheckpointError(
    f"{work_dir} holds the history of a run{through} ({', '.join(files)}) but no checkpoint "
    f"to resume it from ({why}), and training from step 0 would overwrite it. Restore the "
    "checkpoints to resume, or use a new --workdir; to train again from step 0 in this one, "
    f"first move {', '.join(files)} out of it"
  )


def check_folder(work_dir: str) -> None:
  """Refuses (before orbax creates anything) a WORKDIR/checkpoints that is not a folder, or
  that is missing while the workdir holds a run's history."""
  folder = os.path.join(os.path.abspath(work_dir), "checkpoints")
  if not os.path.lexists(folder):
    error = _history_error(work_dir, f"{folder} is missing")
    if error is not None:
      raise error
  elif not os.path.isdir(folder):
    why = f"{folder} is a file, not a folder"
    raise _history_error(work_dir, why) or CheckpointError(
      f"{why}: it is where the run keeps its checkpoints. Move it out of the way and rerun, or "
      "use another --workdir"
    )


def check_keep(keep) -> int:
  if not isinstance(keep, int) or keep < 1:
    raise ValueError(
      f"train.keep_checkpoints must be an integer >= 1 (got {keep!r}): it is how many of the "
      "newest checkpoints to keep, and fewer than 1 would delete the ones a resume needs"
    )
  return keep


class Checkpoints:
  """Saves states with their digests, keeps the newest `keep`, restores verified."""

  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._work_dir = os.path.abspath(workdir)
    self._set_aside_steps = []  # this session's, by any check
    save_noise.quiet_background_errors(self.directory)
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=check_keep(keep), create=True),
    )
    self._last_saved = None  # the step of the newest save this session started

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, step: int, like):
    """Restores into the structure, dtypes and shardings of `like` (no verification)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def restore_raw(self, step: int):
    """Restores the stored tree as saved (nested dicts and lists of arrays), no target."""
    return self._manager.restore(step, args=ocp.args.StandardRestore())

  def record(self, step: int) -> dict | None:
    """The digests and fingerprint saved with checkpoint `step`, or None (saved without them)."""
    path = os.path.join(self.directory, f"{step}{DIGESTS_SUFFIX}")
    try:
      with open(path, "rb") as f:
        record = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {"parts": {}, "damaged": path}
    if not isinstance(record, dict) or not isinstance(record.get("parts", {}), dict):
      return {"parts": {}, "damaged": path}
    return record

  def newest_record(self) -> dict | None:
    """The record of the newest checkpoint that has one (what the run was, for a resume)."""
    return next((record for _, record in self.records()), None)

  def records(self) -> list[tuple[int, dict]]:
    """(step, record) of every checkpoint with a readable record, newest first."""
    found = []
    for step in sorted(self.all_steps(), reverse=True):
      record = self.record(step)
      if record is not None and "damaged" not in record:
        found.append((step, record))
    return found

  def record_path(self, step: int) -> str:
    return os.path.join(self.directory, f"{step}{DIGESTS_SUFFIX}")

  def window_path(self, step: int) -> str:
    return os.path.join(self.directory, f"{step}{WINDOW_SUFFIX}")

  def save_window(self, step: int, first_step: int, window: dict) -> None:
    """Keeps the per-step metrics since the last row with checkpoint `step` (atomically: a
    window cut short by a kill would block every resume)."""
    buffer = io.BytesIO()
    np.savez(buffer, first_step=first_step, **window)
    jsonl.replace_bytes(self.window_path(step), buffer.getvalue())

  def window(self, step: int) -> tuple[int, dict] | None:
    """(first step, metrics) kept with checkpoint `step`, or None; raises if it is damaged."""
    path = self.window_path(step)
    if not os.path.exists(path):
      return None
    with np.load(path) as stored:  # reading every array checks its CRC
      arrays = {name: stored[name] for name in stored.files}
    return int(arrays.pop("first_step")), arrays

  def _known_parts(self) -> dict[int, dict]:
    """Part digests trace/parts.jsonl holds (for checkpoints saved without a digests file)."""
    path = os.path.join(self._work_dir, "trace", "parts.jsonl")
    if not os.path.exists(path):
      return {}
    return {row["step"]: row["parts"] for row in jsonl.read_rows(path)}

  def restore_verified(self, like) -> tuple[object, int, bool]:
    """(state, step, verified) of the newest checkpoint that reads back with its digests.

    A checkpoint saved without a digests file is checked against trace/parts.jsonl's digests
    of its step, if any. A damaged checkpoint (or one whose window is damaged) is set aside in
    WORKDIR/damaged_checkpoints/. Raises CheckpointError when none is intact, or when there is
    none but the workdir holds a run's history.
    """
    known_parts, failures = self._known_parts(), []
    for step in sorted(self.all_steps(), reverse=True):
      record = self.record(step)
      expected = (record or {}).get("parts") or known_parts.get(step)
      try:
        state = self.restore(step, like)
      except Exception as error:  # orbax and TensorStore raise many kinds for damaged files
        reason = f"cannot be read ({_one_line(error)})"
      else:
        actual = trace.part_digests(state) if expected is not None else {}
        bad = [part for part in actual if expected.get(part) != actual[part]]
        reason = f"fails its digest check in {', '.join(bad)}" if bad else self._window_damage(step)
        if reason is None and expected is None:
          logging.warning(
            "Checkpoint at step %d has no recorded digests (saved by an older jgen): restored "
            "unverified.",
            step,
          )
          return state, step, False
        if reason is None:
          if self._set_aside_steps:
            logging.warning("Resuming from step %d, the newest intact checkpoint.", step)
          return state, step, True
      failures.append(f"step {step} {reason}")
      self.set_aside(step, reason)
    if failures:
      raise CheckpointError(
        f"no intact checkpoint in {self.directory} ({'; '.join(failures)}; moved to "
        f"{os.path.join(self._work_dir, DAMAGED_DIR)}). Use a new --workdir; or, to train again "
        "from step 0 in this one, first move its history (metrics.jsonl, trace/) out of it"
      )
    self._check_no_history()
    return like, 0, True

  def _window_damage(self, step: int) -> str | None:
    try:
      self.window(step)
    except Exception as error:  # zipfile, numpy and the OS each raise their own kind
      return f"has a damaged {self.window_path(step)} ({_one_line(error)})"
    return None

  def _check_no_history(self) -> None:
    damaged = os.path.join(self._work_dir, DAMAGED_DIR)
    if os.path.isdir(damaged):
      why = f"{self.directory} holds none; the damaged ones are in {damaged}"
    else:
      why = f"{self.directory} holds none"
    error = _history_error(self._work_dir, why)
    if error is not None:
      raise error

  def set_aside(self, step: int, reason: str) -> str:
    """Moves checkpoint `step` (with its record and window) to WORKDIR/damaged_checkpoints/,
    saying why in one line; returns where."""
    moved = self._set_aside(step)
    self._set_aside_steps.append(step)
    logging.warning("Checkpoint at step %d %s; set aside in %s.", step, reason, moved)
    return moved

  def _set_aside(self, step: int) -> str:
    destination = os.path.join(self._work_dir, DAMAGED_DIR, str(step))
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(destination), exist_ok=True)
      if os.path.exists(destination):
        shutil.rmtree(destination)
      shutil.move(os.path.join(self.directory, str(step)), destination)
      for suffix in (DIGESTS_SUFFIX, WINDOW_SUFFIX):
        path = os.path.join(self.directory, f"{step}{suffix}")
        if os.path.exists(path):
          os.replace(path, destination + suffix)
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes(f"jgen_set_aside_{step}")
    self._manager.reload()
    return destination

  def save(self, step: int, state, parts: dict | None = None, identity: dict | None = None):
    """Starts writing checkpoint `step` (asynchronously) and its digests record."""
    # orbax waits for the previous save here anyway; waiting first names its failure rightly.
    self.wait()
    if parts is not None and jax.process_index() == 0:
      record = {"step": step, "parts": parts, "fingerprint": identity}
      jsonl.replace_bytes(self.record_path(step), json.dumps(record, indent=1).encode())
    try:
      self._manager.save(step, args=ocp.args.StandardSave(state))
    except Exception as error:
      raise self._save_error(step, error) from None
    self._last_saved = step
    self._prune_records()

  def _prune_records(self) -> None:
    if jax.process_index() != 0:
      return
    kept = set(self.all_steps()) | ({self._last_saved} - {None})
    if not kept:
      return
    for name in os.listdir(self.directory):
      # S.digests.json and S.window.npz go with checkpoint S once orbax has deleted it.
      step, _, rest = name.partition(".")
      if f".{rest}" in (DIGESTS_SUFFIX, WINDOW_SUFFIX) and step.isdigit() and int(step) < min(kept):
        os.unlink(os.path.join(self.directory, name))

  def _save_error(self, step, error) -> CheckpointError:
    if not os.path.isdir(self._work_dir):
      return CheckpointError(
        str(
          workdir_lib.io_error(
            OSError(2, _one_line(error), self.step_dir(step)), self._work_dir, None
          )
        )
      )
    good = [s for s in self.all_steps() if s != step and os.path.isdir(self.step_dir(s))]
    rerun = (
      f"The last good checkpoint is step {max(good)}: fix the cause (disk space, permissions) "
      "and rerun the same command to resume from it"
      if good
      else "No checkpoint was saved before it: fix the cause (disk space, permissions) and "
      "rerun the same command to start again"
    )
    return CheckpointError(
      f"writing the checkpoint at step {step} to {self.directory} failed "
      f"({_one_line(error)}); training stopped. {rerun}"
    )

  def check(self) -> None:
    """Raises CheckpointError, in one line, if an asynchronous save has failed."""
    try:
      self._manager.check_for_errors()
    except Exception as error:
      raise self._save_error(self._last_saved, error) from None

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    try:
      self._manager.wait_until_finished()
    except Exception as error:
      raise self._save_error(self._last_saved, error) from None

  def close(self, raise_errors: bool = True) -> None:
    try:
      self.wait()
    except CheckpointError as error:
      if raise_errors:
        raise
      logging.warning("%s", error)
    finally:
      self._manager.close()


def restore_newest_intact(work_dir: str, keep: int, like) -> tuple[object, int, bool]:
  """(state, step, verified) of the newest intact checkpoint of a finished or stopped run in
  `work_dir` (Checkpoints.restore_verified), for a reader outside the run loop."""
  ckpts = Checkpoints(work_dir, keep=keep)
  try:
    return ckpts.restore_verified(like)
  finally:
    ckpts.close()
