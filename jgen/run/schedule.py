"""When the run loop logs, evaluates and saves, and its progress readings."""

import dataclasses
import time


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Cuts [start, num_steps) into scanned chunks that end exactly on event steps."""

  num_steps: int
  steps_per_dispatch: int
  log_every: int
  eval_every: int
  checkpoint_every: int

  @classmethod
  def from_config(cls, train_config) -> "Schedule":
    """The schedule of `config.train` (every trainer's config has these keys)."""
    return cls(
      num_steps=train_config.num_steps,
      steps_per_dispatch=train_config.steps_per_dispatch,
      log_every=train_config.log_every,
      eval_every=train_config.eval_every,
      checkpoint_every=train_config.checkpoint_every,
    )

  def __post_init__(self):
    for name in ("num_steps", "steps_per_dispatch", "log_every", "eval_every", "checkpoint_every"):
      if getattr(self, name) < 1:
        raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")

  def _every(self):
    return (self.log_every, self.eval_every, self.checkpoint_every)

  def chunk_length(self, step: int) -> int:
    """Steps to run from `step` before the next event (or the dispatch limit)."""
    next_event = min(step - step % every + every for every in self._every())
    return min(self.steps_per_dispatch, next_event - step, self.num_steps - step)

  def is_last(self, step: int) -> bool:
    return step == self.num_steps

  def should_log(self, step: int) -> bool:
    # Checkpoint steps are logged too: a checkpoint is saved only after its
    # window's losses were checked finite.
    return step % self.log_every == 0 or self.should_eval(step) or self.should_checkpoint(step)

  def should_eval(self, step: int) -> bool:
    return step % self.eval_every == 0 or self.is_last(step)

  def should_checkpoint(self, step: int) -> bool:
    return step % self.checkpoint_every == 0 or self.is_last(step)


class Progress:
  """steps/s over the last window and an ETA from the whole session's rate."""

  def __init__(self, start_step: int, num_steps: int):
    self._num_steps = num_steps
    self._session_start = (start_step, time.perf_counter())
    self._window_start = self._session_start

  def tick(self, step: int) -> tuple[float, str]:
    """Returns (steps/s since the last tick, ETA text) and starts a new window."""
    now = time.perf_counter()
    window_steps, window_time = step - self._window_start[0], now - self._window_start[1]
    self._window_start = (step, now)
    session_steps, session_time = step - self._session_start[0], now - self._session_start[1]
    rate = session_steps / session_time if session_time > 0 else 0.0
    eta = (self._num_steps - step) / rate if rate > 0 else float("inf")
    return (window_steps / window_time if window_time > 0 else 0.0), format_seconds(eta)

  def restart_window(self, step: int) -> None:
    """Leaves evaluation and checkpoint time out of the next steps/s reading."""
    self._window_start = (step, time.perf_counter())


def format_seconds(seconds: float) -> str:
  if seconds == float("inf"):
    return "?"
  minutes, secs = divmod(round(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
