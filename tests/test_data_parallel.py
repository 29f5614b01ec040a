"""Data parallelism over a mesh of 8 fake CPU devices matches 1 device closely."""

import os
import subprocess
import sys

import jax
import numpy as np
from conftest import tiny_config

from jgen.core import rng
from jgen.trainers import gan as gan_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 20

_RUN = """
import sys, jax, numpy as np
sys.path.insert(0, "tests")
from test_data_parallel import train_params
assert jax.device_count() == 8, jax.devices()
np.save(sys.argv[1], train_params())
"""


def train_params(steps: int = STEPS) -> np.ndarray:
  """A set-discriminator run whose 16 sets per step split evenly over 8 devices."""
  config = tiny_config(setd=True, **{"train.batch_size": 64})
  gan = gan_trainer.Gan.from_config(config)
  root = rng.root_key(config.seed)
  state = gan_trainer.init_state(gan, root)
  if steps:
    data = gan_trainer.training_set(gan, root)
    state, _ = gan_trainer.run_chunk(gan, state, root, data, length=steps)
  leaves = jax.tree.leaves((state.g_params, state.d_params))
  return np.concatenate([np.ravel(leaf) for leaf in leaves])


def test_eight_devices_match_one_device(tmp_path):
  out = tmp_path / "params.npy"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  result = subprocess.run(
    [sys.executable, "-c", _RUN, str(out)], cwd=ROOT, env=env, capture_output=True, text=True
  )
  assert result.returncode == 0, result.stderr[-3000:]
  eight, one = np.load(out), train_params()
  assert jax.device_count() == 1
  # Same data order and keys; only the order of floating-point reductions differs.
  np.testing.assert_allclose(eight, one, rtol=1e-4, atol=1e-5)
  # ... and the comparison is not trivially true: training moved the parameters.
  assert np.abs(one - train_params(steps=0)).max() > 1e-3
