"""The trajectory trace: a digest of every step's data indices and parameters.

Computed on the device inside the scanned update, so a run records, for every
step, what it saw and where it went, at a few percent of the step's cost.
Replay recomputes the same digests and names the first step (and part) that
differs. A digest is a weighted wrapping sum of the raw 32-bit words:

  digest(x) = sum_i word(x_i) * w_i  (mod 2**32),  w_i odd and distinct per position

so any change of a single element always changes it (w_i is odd, hence
invertible mod 2**32), and unrelated changes collide with probability 2**-32.
Optimizer states are twice the size of the parameters, and reading them every
step cost about 20% of the step here, so they are checked at every logged
step by sha256 (`part_digests`) instead of every step.

Also here: the state's digests every logged row carries (`state_digest`, one meaning for every
trainer) and TraceLog, the WORKDIR/trace/ files the run loop writes and a case copies. Replay
is jgen/replays/replay.py.
"""

import dataclasses
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from jgen.core import digest, jsonl

_GOLDEN = np.uint32(0x9E3779B1)


def _words(x: jax.Array) -> jax.Array:
  if x.dtype.itemsize != 4:
    x = x.astype(jnp.float32 if jnp.issubdtype(x.dtype, jnp.floating) else jnp.int32)
  return jax.lax.bitcast_convert_type(x, jnp.uint32).ravel()


def array_digest(x: jax.Array, salt: int = 0) -> jax.Array:
  """uint32 digest of one array's bits (jittable)."""
  words = _words(x)
  position = jnp.arange(words.shape[0], dtype=jnp.uint32) + np.uint32(salt)
  weights = position * _GOLDEN | np.uint32(1)
  return jnp.sum(words * weights, dtype=jnp.uint32)


def tree_digest_u32(tree) -> jax.Array:
  """uint32 digest of every leaf of a pytree; leaves are salted by their index."""
  total = jnp.uint32(0)
  for index, leaf in enumerate(jax.tree.leaves(tree)):
    total = total + array_digest(leaf, salt=index * 0x01000193)
  return total


def trace_row(indices: jax.Array, *parts) -> jax.Array:
  """uint32[1 + len(parts)]: one step's trace (its data indices, then each part of the
  state it traces, after its update)."""
  return jnp.stack([array_digest(indices), *(tree_digest_u32(part) for part in parts)])


def _gathered(leaf):
  # A population sharded over processes: each holds only its members; every process digests
  # the whole (a collective, so all processes call this together).
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and not leaf.is_fully_replicated:
    return multihost_utils.process_allgather(leaf, tiled=True)
  return leaf


def part_digests(state) -> dict[str, str]:
  """sha256 (hex) of each field of a train state (a dataclass), in field order, on the host."""
  return {
    field.name: digest.tree_digest(jax.tree.map(_gathered, getattr(state, field.name)))
    for field in dataclasses.fields(state)
  }


@jax.jit
def _member_digests_u32(state) -> jax.Array:
  return jax.vmap(tree_digest_u32)(state)


def member_digests(state) -> list[str]:
  """A 32-bit device digest per member (sha256 of P states would cost seconds per row)."""
  digests = _member_digests_u32(state)
  if not digests.is_fully_addressable:  # members sharded over processes
    digests = multihost_utils.process_allgather(digests, tiled=True)
  return [f"{int(d):08x}" for d in jax.device_get(digests)]


def state_digest(parts: dict[str, str]) -> str:
  """One digest of the whole state from its parts: equal iff every part is bit-identical.

  Every trainer's rows carry this `state_digest`; replay compares the parts themselves.
  """
  return hashlib.sha256(
    "".join(f"{part}={value};" for part, value in parts.items()).encode()
  ).hexdigest()


class TraceLog:
  """WORKDIR/trace/: steps.u32 (rows of [step, indices, *traced_parts] uint32), parts.jsonl.

  Append-only while training; on resume, rows past the restored step are dropped
  (the resumed run recomputes them bit for bit), as metrics.jsonl does, by an atomic
  rewrite (a temporary file renamed over the old). A partial last row left by a crash or a
  full disk is dropped with a warning.
  """

  def __init__(self, workdir: str, traced_parts, resume_step: int, enabled: bool = True):
    self.columns = 2 + len(traced_parts)  # the step, its indices, then each traced part
    self._dir = os.path.join(workdir, "trace")
    self._steps_path = os.path.join(self._dir, "steps.u32")
    self._parts_path = os.path.join(self._dir, "parts.jsonl")
    self.enabled = enabled
    if not enabled:
      return
    os.makedirs(self._dir, exist_ok=True)
    if os.path.exists(self._steps_path):
      table = self._table()
      rows = self.steps(-1, resume_step)
      if len(rows) != len(table) or os.path.getsize(self._steps_path) != table.nbytes:
        jsonl.replace_bytes(self._steps_path, rows.tobytes())
    jsonl.keep_rows(self._parts_path, lambda p: p["step"] <= resume_step)

  def append_steps(self, first_step: int, rows_KxP: np.ndarray) -> None:
    """Trace rows of steps first_step+1 .. first_step+K (the step each update produced)."""
    if not self.enabled:
      return
    steps = np.arange(first_step + 1, first_step + 1 + len(rows_KxP), dtype=np.uint32)
    table = np.concatenate([steps[:, None], np.asarray(rows_KxP, np.uint32)], axis=1)
    with jsonl.naming(self._steps_path), open(self._steps_path, "ab") as f:
      f.write(table.tobytes())

  def append_parts(self, step: int, parts: dict) -> None:
    if self.enabled:
      with jsonl.naming(self._parts_path), open(self._parts_path, "a") as f:
        f.write(json.dumps({"step": step, "parts": parts}) + "\n")

  def steps(self, after: int, through: int) -> np.ndarray:
    """uint32 rows [step, indices, *traced_parts] with after < step <= through."""
    table = self._table()
    return table[(table[:, 0].astype(np.int64) > after) & (table[:, 0] <= through)]

  def _table(self) -> np.ndarray:
    if not os.path.exists(self._steps_path):
      return np.zeros((0, self.columns), np.uint32)
    words = np.fromfile(self._steps_path, np.uint32)
    whole = len(words) - len(words) % self.columns
    if whole != len(words) or os.path.getsize(self._steps_path) % 4:
      logging.warning(
        "%s: dropped a partial last row left by an interrupted write.", self._steps_path
      )
    return words[:whole].reshape(-1, self.columns)

  def parts(self, after: int, through: int) -> list[dict]:
    return [p for p in self._read_parts() if after < p["step"] <= through]

  def _read_parts(self) -> list[dict]:
    if not os.path.exists(self._parts_path):
      return []
    return jsonl.read_rows(self._parts_path)
