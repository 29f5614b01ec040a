"""SIGTERM and SIGINT stop a run cleanly: finish the current chunk, checkpoint, exit.

A preempted TPU VM, a Slurm time limit or `kill` sends SIGTERM; Ctrl-C sends SIGINT. The
first of either is a request the loop reads after each chunk; a second Ctrl-C stops at once
(KeyboardInterrupt), for a user who will not wait for the checkpoint.

In a multi-process run every process must stop at the same step, or the processes that went
on would wait forever in the next step's collectives. JAX's distributed runtime already
listens for SIGTERM on each process and agrees on a step in the background
(jax.experimental.multihost_utils.reached_preemption_sync_point); the loop asks it after
every chunk with the chunk's ordinal, which all processes share. SIGINT is turned into the
same notice by sending SIGTERM to the process itself.

A study (jgen/studies/runner.py) holds a StopRequests around all its cells, and each cell's
run enters its own inside it. The inner one installs nothing and shares the outer one's
request: a signal that comes after a cell's last check (during its last chunk or its final
evaluation) would otherwise leave with the cell's handlers, and the study would train on.
"""

import os
import signal
import sys
import threading

import jax
from jax.experimental import multihost_utils

# The exit status of a run stopped by a signal after saving its checkpoint: EX_TEMPFAIL
# ("try again later"), so schedulers and scripts can tell it from a failure and requeue it.
EXIT_STOPPED = 75


class StopRequested(RuntimeError):
  """Raised by the loop after the checkpoint of a requested stop is on disk."""

  exit_code = EXIT_STOPPED


def _distributed() -> bool:
  return jax.process_count() > 1


class _Request:
  """The signal received (its name), shared by nested StopRequests."""

  signal_name: str | None = None


class StopRequests:
  """Installs the handlers for the duration of a run or a study (a context manager); one
  entered while another is installed shares that one's request and installs nothing."""

  _installed: "StopRequests | None" = None  # the outermost one, whose handlers are in place

  def __init__(self):
    self._request = _Request()
    self._previous = {}
    self._chunks = 0

  @property
  def signal_name(self) -> str | None:
    return self._request.signal_name

  @signal_name.setter
  def signal_name(self, name: str | None) -> None:
    self._request.signal_name = name

  def __enter__(self):
    if StopRequests._installed is not None:
      self._request = StopRequests._installed._request
      return self
    if threading.current_thread() is not threading.main_thread():
      return self  # handlers can only be installed from the main thread
    # Multi-process: SIGTERM stays with JAX's preemption notifier, which agrees on a step.
    wanted = (signal.SIGINT,) if _distributed() else (signal.SIGINT, signal.SIGTERM)
    for number in wanted:
      self._previous[number] = signal.signal(number, self._handle)
    StopRequests._installed = self
    return self

  def __exit__(self, *exc):
    for number, handler in self._previous.items():
      signal.signal(number, handler)
    self._previous = {}
    if StopRequests._installed is self:
      StopRequests._installed = None

  def _handle(self, number, frame):
    del frame
    if self.signal_name is not None and number == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C: stop now
    self.signal_name = signal.Signals(number).name
    # Said at once: the chunk in flight may take a while, and silence reads as a hang.
    then = " (Ctrl-C again stops at once, without one)" if number == signal.SIGINT else ""
    print(
      f"{self.signal_name} received: finishing the current chunk, then a checkpoint is "
      f"written and the run exits{then}.",
      file=sys.stderr,
      flush=True,
    )
    if _distributed():
      os.kill(os.getpid(), signal.SIGTERM)  # the runtime's notifier tells the other processes

  def should_stop(self) -> bool:
    """Called once after every chunk, by every process: True when all should stop now."""
    self._chunks += 1
    if not _distributed():
      return self.signal_name is not None
    if multihost_utils.reached_preemption_sync_point(self._chunks):
      self.signal_name = self.signal_name or "SIGTERM"
      return True
    return False
