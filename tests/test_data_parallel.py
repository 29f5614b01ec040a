"""Data parallelism over a mesh of 8 fake CPU devices matches 1 device closely."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
from conftest import tiny_config

from jgen.core import parallel, rng
from jgen.run import loop
from jgen.trainers import gan as gan_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 20

_RUN = """
import json, sys, jax, numpy as np
sys.path.insert(0, "tests")
from test_data_parallel import record_batch_shardings, train_params
assert jax.device_count() == 8, jax.devices()
# Off for this process: a compiled program read back from a cache skips the partitioner, and
# with it the sharding report below.
jax.config.update("jax_enable_compilation_cache", False)
batches = record_batch_shardings()
np.save(sys.argv[1], train_params())
with open(sys.argv[2], "w") as f:
  json.dump(batches, f)
"""


def record_batch_shardings() -> list[dict]:
  """Reports, when the trainer's step compiles, how each batch it hands to
  `parallel.shard_leading_axis` is laid out over the devices: that helper replicates silently
  when the batch does not split, so only the compiled layout shows that it did."""
  batches = []
  shard_leading_axis = parallel.shard_leading_axis

  def reporting(x, mesh):
    y = shard_leading_axis(x, mesh)

    def report(sharding, shape=tuple(x.shape)):
      batches.append(
        {
          "shape": list(shape),
          "shard_shape": list(sharding.shard_shape(shape)),
          "devices": len(sharding.device_set),
        }
      )

    jax.debug.inspect_array_sharding(y, callback=report)
    return y

  parallel.shard_leading_axis = reporting
  return batches


def train_params(steps: int = STEPS) -> np.ndarray:
  """A set-discriminator run whose 16 sets per step split evenly over 8 devices."""
  config = tiny_config(setd=True, **{"train.batch_size": 64})
  gan = gan_trainer.Gan.from_config(config)
  root = rng.root_key(config.seed)
  state = gan_trainer.init_state(gan, root)
  if steps:
    data = gan_trainer.training_set(gan, root)
    state, _ = loop.run_chunk(gan, state, root, data, length=steps)
  leaves = jax.tree.leaves((state.g_params, state.d_params))
  return np.concatenate([np.ravel(leaf) for leaf in leaves])


def test_eight_devices_match_one_device(tmp_path):
  out, layout = tmp_path / "params.npy", tmp_path / "batches.json"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  result = subprocess.run(
    [sys.executable, "-c", _RUN, str(out), str(layout)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  # The batch really was split: every batch the step shards (its 64 real points and 64 z, and
  # the 16 sets of 4 each side) lies in eight slices of its leading axis, one per device.
  batches = json.loads(layout.read_text())
  assert {tuple(b["shape"]) for b in batches} >= {(64, 2), (16, 4, 2)}
  for batch in batches:
    assert batch["devices"] == 8, batch
    assert batch["shard_shape"] == [batch["shape"][0] // 8, *batch["shape"][1:]], batch
  eight, one = np.load(out), train_params()
  assert jax.device_count() == 1
  # Same data order and keys; only the order of floating-point reductions differs.
  np.testing.assert_allclose(eight, one, rtol=1e-4, atol=1e-5)
  # ... and the comparison is not trivially true: training moved the parameters.
  assert np.abs(one - train_params(steps=0)).max() > 1e-3
