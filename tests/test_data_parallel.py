"""Data parallelism over a mesh of 8 fake CPU devices matches 1 device closely; with
config.deterministic, sums over devices go in mesh order whoever implements the collectives."""

import hashlib
import json
import os
import socket
import subprocess
import sys

import conftest
import jax
import numpy as np
from conftest import tiny_config
from jax.sharding import PartitionSpec

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


def train_params(steps: int = STEPS, **overrides) -> np.ndarray:
  """A set-discriminator run whose 16 sets per step split evenly over 8 (or 4) devices."""
  config = tiny_config(setd=True, **{"train.batch_size": 64, **overrides})
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
  env = {
    **os.environ,
    "XLA_FLAGS": conftest.xla_flags_with("--xla_force_host_platform_device_count=8"),
  }
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


_TOPOLOGY = """
import json, sys, jax
sys.path.insert(0, "tests")
if sys.argv[2] != "0":  # one process, but its collectives go through gloo, as across processes
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(f"127.0.0.1:{sys.argv[2]}", num_processes=1, process_id=0)
from test_data_parallel import sums_and_runs
assert jax.device_count() == 4, jax.devices()
with open(sys.argv[1], "w") as f:
  json.dump(sums_and_runs(), f)
"""

# One value per device whose sum depends on the order: in float32, 1e8 + 1 = 1e8.
ORDER_SENSITIVE = (1e8, 1.0, -1e8, 1.0)


def record_local_shapes() -> list[dict]:
  """The shapes each device's part of the step sees, recorded as the step is traced: a split
  batch shows as a quarter of it on each of 4 devices, a replicated one as all of it."""
  shapes = []
  for name in ("mean_over_devices", "vjp_per_device"):
    original = getattr(parallel, name)

    def recording(fn, mesh, *args, name=name, original=original, **kwargs):
      def local(*xs):
        leaves = jax.tree.leaves(xs[1:])
        shapes.append({"where": name, "shapes": [list(x.shape) for x in leaves]})
        return fn(*xs)

      return original(local, mesh, *args, **kwargs)

    setattr(parallel, name, recording)
  return shapes


def sums_and_runs() -> dict:
  """Under this process's collectives: the sum of ORDER_SENSITIVE by `sum_in_mesh_order` and
  by psum; sha256 of the parameters after STEPS steps with config.deterministic on and off;
  the shapes the deterministic step's per-device parts saw."""
  mesh = parallel.make_mesh()
  per_device = np.asarray(ORDER_SENSITIVE, np.float32)[:, None]

  def summed(add):
    spec = PartitionSpec(parallel.DATA_AXIS)
    return float(
      jax.jit(jax.shard_map(add, mesh=mesh, in_specs=spec, out_specs=PartitionSpec()))(per_device)[
        0
      ]
    )

  shapes = record_local_shapes()
  runs = {
    str(deterministic): hashlib.sha256(train_params(deterministic=deterministic)).hexdigest()
    for deterministic in (True, False)
  }
  return {
    "in_mesh_order": summed(lambda x: parallel.sum_in_mesh_order(x[0])),
    "psum": summed(lambda x: jax.lax.psum(x[0], parallel.DATA_AXIS)),
    "runs": runs,
    "shapes": shapes,
  }


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_deterministic_sums_over_devices_do_not_depend_on_the_collectives(tmp_path):
  """4 fake devices in one process, once with its own collectives and once through gloo (the
  collectives of a multi-process run, which add in ring order): with config.deterministic the
  trained parameters are the same bits, so the sums went in mesh order; without it they are
  not, so the comparison can tell. The per-device parts saw a quarter of the batch each."""
  env = {
    **os.environ,
    "XLA_FLAGS": conftest.xla_flags_with("--xla_force_host_platform_device_count=4"),
  }
  runs = {}
  for name, port in (("local", 0), ("gloo", _free_port())):
    out = tmp_path / f"{name}.json"
    command = [sys.executable, "-c", _TOPOLOGY, str(out), str(port)]
    runs[name] = (out, subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE))
  results = {}
  for name, (out, process) in runs.items():
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()[-3000:]
    results[name] = json.loads(out.read_text())
  local, gloo = results["local"], results["gloo"]
  # ((1e8 + 1) - 1e8) + 1 = 1 in mesh order on both; gloo's psum adds in another order.
  assert local["in_mesh_order"] == gloo["in_mesh_order"] == 1.0
  assert gloo["psum"] != 1.0
  assert local["runs"]["True"] == gloo["runs"]["True"]
  assert local["runs"]["False"] != gloo["runs"]["False"]
  # 16 sets of 4 per step (64 samples): D's loss sees 4 sets per device, G's vjp 16 z, the
  # generator loss 4 logits; nothing ran whole on every device.
  seen = {(s["where"], tuple(s["shapes"][0])) for s in local["shapes"]}
  assert seen == {
    ("mean_over_devices", (4, 4, 2)),
    ("vjp_per_device", (16, tiny_config().model.generator.z_dim)),
    ("mean_over_devices", (4,)),
  }, seen
