"""Orbax checkpoints of the train state under WORKDIR/checkpoints, verified on restore.

WORKDIR/checkpoints/S/                 orbax's checkpoint of step S
WORKDIR/checkpoints/S.digests.json     written with it: the sha256 of each part of the state
                                       (jgen.collapse.trace.part_digests) and the run's
                                       fingerprint (jgen/run/fingerprint.py)
WORKDIR/damaged_checkpoints/S/         a checkpoint that could not be read or failed its
                                       digests, set aside (never deleted) by a resume

A restore checks the state against the digests recorded when it was saved (or, for a
checkpoint written before records existed, against trace/parts.jsonl's digests of that step)
and falls back to the newest intact checkpoint, saying so in one line per damaged one.
Saves are asynchronous; a failure is raised by `check` (called after every chunk) in one line,
with the last good checkpoint named.
"""

import json
import os
import shutil

import jax
import orbax.checkpoint as ocp
from absl import logging

from jgen.collapse import trace
from jgen.core import jsonl

DIGESTS_SUFFIX = ".digests.json"
WINDOW_SUFFIX = ".window.npz"  # written by the loop when a signal stops a run between rows
DAMAGED_DIR = "damaged_checkpoints"


class CheckpointError(RuntimeError):
  pass


def _one_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


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
    """The digests and fingerprint saved with checkpoint `step`, or None (older runs)."""
    path = os.path.join(self.directory, f"{step}{DIGESTS_SUFFIX}")
    try:
      with open(path) as f:
        return json.load(f)
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {"parts": {}, "damaged": path}

  def newest_record(self) -> dict | None:
    """The record of the newest checkpoint that has one (what the run was, for a resume)."""
    for step in sorted(self.all_steps(), reverse=True):
      record = self.record(step)
      if record is not None and "damaged" not in record:
        return record
    return None

  def _known_parts(self) -> dict[int, dict]:
    """Part digests trace/parts.jsonl holds (for checkpoints saved without a digests file)."""
    path = os.path.join(self._work_dir, "trace", "parts.jsonl")
    if not os.path.exists(path):
      return {}
    return {row["step"]: row["parts"] for row in jsonl.read_rows(path)}

  def restore_verified(self, like) -> tuple[object, int, bool]:
    """(state, step, verified) of the newest checkpoint that reads back with its digests.

    A checkpoint saved without a digests file is checked against trace/parts.jsonl's digests
    of its step, if any. A damaged checkpoint is set aside in WORKDIR/damaged_checkpoints/.
    Raises CheckpointError when none is intact.
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
        if expected is None:
          logging.warning(
            "Checkpoint at step %d has no recorded digests (saved by an older jgen): restored "
            "unverified.",
            step,
          )
          return state, step, False
        actual = trace.part_digests(state)
        bad = [part for part in actual if expected.get(part) != actual[part]]
        if not bad:
          if failures:
            logging.warning("Resuming from step %d, the newest intact checkpoint.", step)
          return state, step, True
        reason = f"fails its digest check in {', '.join(bad)}"
      failures.append(f"step {step} {reason}")
      moved = self._set_aside(step)
      logging.warning("Checkpoint at step %d %s; set aside in %s.", step, reason, moved)
    if failures:
      raise CheckpointError(
        f"no intact checkpoint in {self.directory} ({'; '.join(failures)}; moved to "
        f"{os.path.join(self._work_dir, DAMAGED_DIR)}). Rerun to train from step 0 in this "
        "--workdir, or use a new --workdir"
      )
    return like, 0, True

  def _set_aside(self, step: int) -> str:
    destination = os.path.join(self._work_dir, DAMAGED_DIR, str(step))
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(destination), exist_ok=True)
      if os.path.exists(destination):
        shutil.rmtree(destination)
      shutil.move(os.path.join(self.directory, str(step)), destination)
      digests = os.path.join(self.directory, f"{step}{DIGESTS_SUFFIX}")
      if os.path.exists(digests):
        os.replace(digests, destination + DIGESTS_SUFFIX)
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
      path = os.path.join(self.directory, f"{step}{DIGESTS_SUFFIX}")
      jsonl.replace_bytes(path, json.dumps(record, indent=1).encode())
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
    good = [s for s in self.all_steps() if s != step and os.path.isdir(self.step_dir(s))]
    last = f"step {max(good)}" if good else "none yet"
    return CheckpointError(
      f"writing the checkpoint at step {step} to {self.directory} failed "
      f"({_one_line(error)}); training stopped. The last good checkpoint is {last}: fix the "
      "cause (disk space, permissions) and rerun the same command to resume from it"
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
