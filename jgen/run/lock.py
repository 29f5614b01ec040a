"""One writer per workdir: WORKDIR/run.lock, held while a run trains.

The lock is an advisory `flock` on the file, which the kernel releases when its process ends
however it ends, so a lock left by a dead process is recognized (the file is there, nobody
holds it) and taken over. The file says who holds it (host, pid, command), for the one-line
refusal a second run gets.
"""

import fcntl
import json
import os
import socket
import sys
import time

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

LOCK_FILE = "run.lock"


class WorkdirLockedError(RuntimeError):
  pass


def _holder_text(path: str) -> str:
  try:
    with open(path) as f:
      holder = json.load(f)
  except (OSError, ValueError):
    return "another process"
  started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
  return f"process {holder.get('pid')} on {holder.get('host')} (started {started})"


class WorkdirLock:
  """Taken by `acquire`, released by `release` (or when the process ends)."""

  def __init__(self, work_dir: str):
    self.path = os.path.join(work_dir, LOCK_FILE)
    self._fd = None

  def acquire(self) -> None:
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      stale = os.fstat(fd).st_size > 0
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        os.close(fd)
        raise WorkdirLockedError(
          f"{os.path.dirname(self.path)} is in use by {_holder_text(self.path)}: one run per "
          f"--workdir. Wait for it to finish, stop it, or use another --workdir"
        ) from None
      # The holder may have released and unlinked the file between our open and our lock:
      # then we hold a lock on a file nobody else will see. Try again on the path's file.
      try:
        same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)
    if stale:
      logging.warning(
        "%s was left by %s, which is no longer running; taking it over.",
        self.path,
        _holder_text(self.path),
      )
    holder = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "started": time.time(),
      "command": " ".join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder).encode())
    self._fd = fd

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.unlink(self.path)
    except FileNotFoundError:
      pass
    os.close(self._fd)  # closing drops the flock
    self._fd = None

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()


def acquire_for_run(work_dir: str) -> WorkdirLock:
  """Process 0 takes the lock; in a multi-process run every process learns whether it did,
  so all of them stop together when another run holds the workdir."""
  lock, error = WorkdirLock(work_dir), None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except WorkdirLockedError as refused:
      error = refused
  if jax.process_count() > 1:
    refused = bool(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
    if refused and error is None:
      error = WorkdirLockedError(f"{work_dir} is in use by another run (process 0 found its lock)")
  if error is not None:
    raise error
  return lock
