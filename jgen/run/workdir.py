"""A run's directory: its config, its metrics log, its TensorBoard events.

WORKDIR/config.json     the full config of the run (checked on resume)
WORKDIR/metrics.jsonl   one JSON object per logged step
WORKDIR/tensorboard/    the same scalars as TensorBoard events (tensorboardX)
"""

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


def config_differences(old: dict, new: dict) -> list[str]:
  """The keys whose values differ (or exist in only one), except resumable ones."""
  old_flat, new_flat = flatten(old), flatten(new)
  keys = sorted(set(old_flat) | set(new_flat))
  return [
    f"{key}: {old_flat.get(key, '<absent>')!r} -> {new_flat.get(key, '<absent>')!r}"
    for key in keys
    if not is_resumable(key) and old_flat.get(key) != new_flat.get(key)
  ]


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to continue a run in `workdir` that was started with another config."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      old = json.load(f)
  except json.JSONDecodeError as error:
    # The checkpoints' fingerprint still guards the run (jgen/run/fingerprint.py).
    logging.warning("%s is damaged (%s); it will be rewritten from this run's config.", path, error)
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
    self._tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def _drop_rows_after(self, step: int) -> None:
    """A crashed run may have logged past its last checkpoint; the resumed run
    recomputes those steps bit for bit, so their old rows are dropped, not lost."""
    jsonl.keep_rows(self.path, lambda row: row["step"] <= step)

  def write(self, row: dict) -> None:
    if not self._enabled:
      return
    row = {key: _json_safe(value) for key, value in row.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for key, value in row.items():
      if isinstance(value, int | float) and not isinstance(value, bool) and key != "step":
        self._tensorboard.add_scalar(key, value, row["step"])
    self._tensorboard.flush()

  def close(self) -> None:
    if self._enabled:
      self._tensorboard.close()
