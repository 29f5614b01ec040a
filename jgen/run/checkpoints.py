"""Orbax checkpoints of the train state under WORKDIR/checkpoints."""

import os

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """Saves every `checkpoint_every` steps, keeps the newest `keep`, restores the latest."""

  def __init__(self, workdir: str, keep: int):
    self._manager = ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, step: int, like):
    """Restores into the structure, dtypes and shardings of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def restore_raw(self, step: int):
    """Restores the stored tree as saved (nested dicts and lists of arrays), no target."""
    return self._manager.restore(step, args=ocp.args.StandardRestore())

  def save(self, step: int, state) -> None:
    # Async: training continues while the write finishes; `close` waits.
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def step_dir(self, step: int) -> str:
    return os.path.join(self._manager.directory, str(step))

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
