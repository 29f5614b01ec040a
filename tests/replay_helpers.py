"""What the two replay test files share: how a counterfactual's start states are observed and
compared with the case's checkpoint."""

import jax
import numpy as np

from jgen.collapse import recorder
from jgen.core import rng
from jgen.replays import replay
from jgen.run import checkpoints
from jgen.trainers import gan as gan_trainer


def start_states(monkeypatch) -> list:
  """Records, on the host, the state each branch of a counterfactual starts its window from."""
  starts, run_window = [], replay.run_window

  def recording(gan, state, *args, **kwargs):
    starts.append(jax.device_get(state))  # before the window, which may donate `state`
    return run_window(gan, state, *args, **kwargs)

  monkeypatch.setattr(replay, "run_window", recording)
  return starts


def checkpointed_state(case):
  """The case's start checkpoint, restored as the trainer saved it."""
  config = recorder.case_config(case)
  like = gan_trainer.init_state(gan_trainer.Gan.from_config(config), rng.root_key(config.seed))
  manager = checkpoints.Checkpoints(case["dir"], keep=1000)
  try:
    return jax.device_get(manager.restore(case["start_step"], like=like))
  finally:
    manager.close()


def same_arrays(a, b) -> bool:
  a, b = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(a) == len(b) and all(
    np.shape(x) == np.shape(y) and np.array_equal(x, y) for x, y in zip(a, b, strict=True)
  )
