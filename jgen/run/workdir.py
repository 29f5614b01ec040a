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


def _flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{name}."))
    else:
      flat[name] = value
  return flat


def _resumable(key: str) -> bool:
  # Detectors and the trace observe the run; they never change what it computes.
  return key in RESUMABLE_CHANGES or key.startswith("collapse.")


def config_differences(old: dict, new: dict) -> list[str]:
  """The keys whose values differ (or exist in only one), except resumable ones."""
  old_flat, new_flat = _flatten(old), _flatten(new)
  keys = sorted(set(old_flat) | set(new_flat))
  return [
    f"{key}: {old_flat.get(key, '<absent>')!r} -> {new_flat.get(key, '<absent>')!r}"
    for key in keys
    if not _resumable(key) and old_flat.get(key) != new_flat.get(key)
  ]


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to continue a run in `workdir` that was started with another config."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = json.load(f)
  differences = config_differences(old, config.to_dict())
  if differences:
    raise WorkdirMismatchError(
      f"{workdir} holds a run with a different config, so it cannot be resumed:\n  "
      + "\n  ".join(differences)
      + "\nUse a new --workdir, or delete the old one."
    )


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(config.to_dict(), f, indent=2, sort_keys=True)


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
    if not os.path.exists(self.path):
      return
    rows = jsonl.read_rows(self.path)
    kept = [row for row in rows if row["step"] <= step]
    if len(kept) != len(rows):
      jsonl.write_rows(self.path, kept)

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
