"""A run's directory: its config, its metrics log, its TensorBoard events.

WORKDIR/config.json     the full config of the run (checked on resume)
WORKDIR/metrics.jsonl   one JSON object per logged step
WORKDIR/tensorboard/    the same scalars as TensorBoard events (tensorboardX)
"""

import errno
import json
import math
import os

import ml_collections
import tensorboardX
from absl import logging

from jgen.core import jsonl

# Keys that may change when a run is resumed: they decide how long and how
# often to observe the run, never what the run computes.
RESUMABLE_CHANGES = frozenset(
  {
    "train.num_steps",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.steps_per_dispatch",
  }
)


class WorkdirMismatchError(ValueError):
  pass


class WorkdirIOError(RuntimeError):
  """A file of the run could not be written or read (full disk, permissions, a deleted
  --workdir), in one line naming it."""


def flatten(tree: dict, prefix: str = "") -> dict:
  """{'a.b': value} of a nested dict."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(flatten(value, f"{name}."))
    else:
      flat[name] = value
  return flat


def is_resumable(key: str) -> bool:
  # Detectors and the trace observe the run; they never change what it computes.
  return key in RESUMABLE_CHANGES or key.startswith("collapse.")


def same_value(a, b) -> bool:
  """a == b, where NaN equals NaN (a setting of NaN is the same setting on every run)."""
  both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
  return both_nan or a == b


# Keys added after runs were recorded without them: the value that does what those runs did
# (the code read each optional key with this default before the configs declared it).
ADDED_KEYS = {
  "population.devices": 1,
  "data.balanced": False,
  "train.packing": "grouped",
  "train.update_rule": "alternating",
  "model.generator.batch_norm": False,
  "model.generator.init": "flax",
  "model.discriminator.init": "flax",
  "eval.bn_refresh_batches": 0,
  "sampling.reach_every_mode": False,
  "train.lr_decay": "none",
  "model.architecture": "conv",
  "model.depth": 2,
  "eval.priors": "gaussian,gmm",
  "eval.knn_k": 5,
  "eval.held_out_metrics": False,
  "objective.num_levels": 16,
  "eval.sample_prior": "gaussian",
  "eval.code_flow_dir": "",
  "study.data": "digits",
  "study.memorization_samples": 2000,
}
# Keys that cannot change a single run's results (population.size 1).
POPULATION_ONLY = ("population.devices",)


def comparable(old_flat: dict, new_flat: dict) -> tuple[dict, dict]:
  """Two flattened configs as a resume compares them: a key added since `old` was recorded
  counts as the value that does what `old`'s run did (also inside a study config's nested run
  configs), and population-only keys do not count for a single run."""
  old_flat, new_flat = dict(old_flat), dict(new_flat)
  for key in set(new_flat) - set(old_flat):
    # A run config's key, or the same key of a run config a study's config nests ("base.",
    # "prior.", "bases.dgn.").
    added = [name for name in ADDED_KEYS if key == name or key.endswith(f".{name}")]
    if added:
      old_flat[key] = ADDED_KEYS[added[0]]
  if old_flat.get("population.size") == new_flat.get("population.size") == 1:
    for key in POPULATION_ONLY:
      old_flat.pop(key, None)
      new_flat.pop(key, None)
  return old_flat, new_flat


def config_differences(old: dict, new: dict) -> list[str]:
  """The keys whose values differ (or exist in only one), except resumable ones."""
  old_flat, new_flat = comparable(flatten(old), flatten(new))
  keys = sorted(set(old_flat) | set(new_flat))
  return [
    f"{key}: {old_flat.get(key, '<absent>')!r} -> {new_flat.get(key, '<absent>')!r}"
    for key in keys
    if not is_resumable(key) and not same_value(old_flat.get(key), new_flat.get(key))
  ]


def read_config(workdir: str) -> dict | None:
  """The config.json of `workdir` as a dict, or None when it is absent or damaged."""
  try:
    with open(os.path.join(workdir, "config.json"), "rb") as f:
      config = json.loads(f.read().decode("utf-8"))
  except (FileNotFoundError, ValueError):  # UnicodeDecodeError and JSONDecodeError included
    return None
  return config if isinstance(config, dict) else None


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to continue a run in `workdir` that was started with another config."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  try:
    with open(path, "rb") as f:
      old = json.loads(f.read().decode("utf-8"))
    if not isinstance(old, dict):
      raise ValueError(f"a JSON {type(old).__name__}, not an object")
  except ValueError as error:  # not JSON, or not UTF-8 text at all
    why = "not UTF-8 text" if isinstance(error, UnicodeDecodeError) else str(error)
    # The checkpoints' fingerprint still guards the run (jgen/run/fingerprint.py).
    logging.warning("%s is damaged (%s); it will be rewritten from this run's config.", path, why)
    return
  differences = config_differences(old, config.to_dict())
  if differences:
    raise WorkdirMismatchError(
      f"{workdir} holds a run with a different config, so it cannot be resumed:\n  "
      + "\n  ".join(differences)
      + "\nUse a new --workdir, or delete the old one."
    )
  _check_decay_span(workdir, old, config)


def _check_decay_span(workdir: str, old: dict, config: ml_collections.ConfigDict) -> None:
  """train.num_steps may change on resume, except under a learning-rate decay that spans it."""
  decay = config.train.get("lr_decay", "none")
  old_steps = old.get("train", {}).get("num_steps")
  if decay != "none" and old_steps is not None and old_steps != config.train.num_steps:
    raise WorkdirMismatchError(
      f"{workdir} was trained with train.lr_decay={decay} over train.num_steps={old_steps}; "
      f"resuming with {config.train.num_steps} would change the learning-rate schedule. Use a "
      "new --workdir, or train.lr_decay=none."
    )


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  text = json.dumps(config.to_dict(), indent=2, sort_keys=True)
  jsonl.replace_bytes(os.path.join(workdir, "config.json"), text.encode())


def check_config(config: ml_collections.ConfigDict) -> None:
  """Values every trainer's loop relies on, checked before anything is written."""
  evaluation = config.get("eval")
  if evaluation is not None and "num_samples" in evaluation and evaluation.num_samples < 1:
    raise ValueError(
      f"eval.num_samples must be >= 1 (got {evaluation.num_samples}): every evaluation draws "
      "that many samples; set --config.eval.num_samples=N"
    )


def prepare(workdir: str) -> None:
  """Creates `workdir`, or says in one line why it cannot be one."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"--workdir {workdir} is an existing file, not a directory: pass a folder")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as error:
    raise ValueError(f"cannot create --workdir {workdir}: {error.strerror}") from None


HISTORY_FILES = (
  "metrics.jsonl",
  os.path.join("trace", "steps.u32"),
  os.path.join("trace", "parts.jsonl"),
)


def history(workdir: str) -> tuple[list[str], int | None]:
  """(the history files a run has logged in `workdir`, the last step they name).

  A parts row of step 0 alone is not history: a fresh run writes it before its first step.
  """
  files, steps = [], []
  for name in HISTORY_FILES:
    path = os.path.join(workdir, name)
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
      continue
    if name.endswith(".jsonl"):
      try:
        logged = [row.get("step", 0) for row in jsonl.read_rows(path)]
      except ValueError:  # damaged, but history all the same
        logged = [None]
      if not [step for step in logged if step != 0]:
        continue
      steps += [step for step in logged if isinstance(step, int)]
    files.append(name)
  return files, max(steps, default=None)


def io_error(error: OSError, workdir: str, last_checkpoint: int | None) -> WorkdirIOError:
  """`error` (raised while a run read or wrote `workdir`) as one line naming the file and the
  fix."""
  what = f"{error.filename or 'a file of the run'} ({error.strerror or error})"
  if error.filename2:
    what = f"{error.filename} -> {error.filename2} ({error.strerror or error})"
  if not os.path.isdir(workdir):
    return WorkdirIOError(
      f"--workdir {workdir} was deleted or moved while the run used it ({what}): nothing more "
      "can be saved there. Put it back and rerun the same command to resume, or rerun it to "
      "train again from step 0"
    )
  rerun = (
    f"The last good checkpoint is step {last_checkpoint}: {{fix}} and rerun the same command "
    "to resume from it"
    if last_checkpoint is not None
    else "No checkpoint was saved yet: {fix} and rerun the same command to start again"
  )
  if error.errno in (errno.ENOSPC, errno.EDQUOT):
    return WorkdirIOError(
      f"cannot write {what}: the disk is full; training stopped. "
      + rerun.format(fix="free disk space")
    )
  if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
    return WorkdirIOError(
      f"cannot write {what}: --workdir {workdir} is not writable. Make it writable (or copy it "
      "to a writable place and pass that) and rerun the same command, or use another --workdir"
    )
  return WorkdirIOError(
    f"cannot read or write {what}; training stopped. " + rerun.format(fix="fix the cause")
  )


def remove_stale_temporaries(workdir: str) -> None:
  """Deletes the temporary files of rewrites (jsonl.replace_bytes) that a killed run left in
  the workdir's folders. Call with the workdir's lock held: then no writer is in flight."""
  cases = os.path.join(workdir, "cases")
  folders = ["", "trace", "checkpoints"]
  if os.path.isdir(cases):
    folders += [os.path.join("cases", name) for name in sorted(os.listdir(cases))]
  removed = [p for f in folders for p in jsonl.remove_stale_temporaries(os.path.join(workdir, f))]
  if removed:
    logging.info("Removed %d temporary files left by an interrupted write.", len(removed))


def _json_safe(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


class MetricsLog:
  """Appends rows to metrics.jsonl (and TensorBoard); truncates rows past a resume point."""

  def __init__(self, workdir: str, resume_step: int, enabled: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._enabled = enabled  # multi-host: only process 0 writes
    if not enabled:
      return
    self._drop_rows_after(resume_step)
    # tensorboardX writes event files without TensorFlow.
    self._tensorboard_dir = os.path.join(workdir, "tensorboard")
    self._tensorboard = tensorboardX.SummaryWriter(self._tensorboard_dir)

  def _drop_rows_after(self, step: int) -> None:
    """A crashed run may have logged past its last checkpoint; the resumed run
    recomputes those steps bit for bit, so their old rows are dropped, not lost."""
    kept = jsonl.keep_rows(self.path, lambda row: row["step"] <= step)
    if step > 0 and not kept:
      # The checkpoint holds the state, not the rows; appending after nothing would hide that
      # the file now begins after the rows it lost.
      state = "holds no rows" if os.path.exists(self.path) else "is missing"
      logging.warning(
        "%s %s, but the run resumes from its checkpoint at step %d: the rows of the steps up to "
        "step %d are lost from it (the state is not) and new rows follow from there. To get "
        "them back, restore the file from a backup, or rerun the same command with "
        "--config.train.num_steps=%d in a new --workdir (the run is deterministic).",
        self.path,
        state,
        step,
        step,
        step,
      )

  def write(self, row: dict) -> None:
    if not self._enabled:
      return
    row = {key: _json_safe(value) for key, value in row.items()}
    with jsonl.naming(self.path), open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    with jsonl.naming(self._tensorboard_dir):
      for key, value in row.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and key != "step":
          self._tensorboard.add_scalar(key, value, row["step"])
      self._tensorboard.flush()

  def close(self) -> None:
    """Closes the TensorBoard writer; a failure to flush its last events (a full disk) is a
    warning, which leaves the error that stopped the run, if any, the one reported."""
    if not self._enabled:
      return
    try:
      self._tensorboard.close()
    except OSError as error:
      logging.warning(
        "could not finish writing the TensorBoard events in %s (%s); %s holds every row.",
        self._tensorboard_dir,
        error.strerror or error,
        self.path,
      )
