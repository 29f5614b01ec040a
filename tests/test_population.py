"""Populations: P independent members (seeds seed..seed+P-1) trained in one vmapped program."""

import json
import os
import subprocess
import sys

import conftest
import jax
import numpy as np
import pytest
from conftest import tiny_config

from jgen.core import jsonl, rng
from jgen.run import loop
from jgen.trainers import gan as gan_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(work_dir):
  return jsonl.read_rows(os.path.join(work_dir, "metrics.jsonl"))


def train_state(config, steps=10):
  gan, root, data = gan_trainer.build(config)
  state, _ = loop.run_chunk(gan, gan_trainer.init_state(gan, root), root, data, steps)
  return state


def train_members(config, steps=10, member=None) -> np.ndarray:
  state = train_state(config, steps)
  leaves = jax.tree.leaves((state.g_params, state.d_params))
  if member is not None:
    leaves = [leaf[member] for leaf in leaves]
  return np.concatenate([np.ravel(leaf) for leaf in leaves])


# One tiny set-D population of 2 (60 steps), shared by the tests that only read a finished run.
POPULATION = {"population.size": 2}


@pytest.fixture(scope="module")
def population_run(tmp_path_factory):
  work_dir = tmp_path_factory.mktemp("population")
  return work_dir, gan_trainer.train_and_evaluate(
    tiny_config(setd=True, **POPULATION), str(work_dir)
  )


def test_the_members_of_a_population_differ(population_run):
  # That a population is deterministic is shown by the resume below: its first 40 steps are a
  # separate run of the same config, and must give population_run's digests, member by member.
  rows = _rows(population_run[0])
  for row in rows:
    assert len(set(row["member_digests"])) == 2  # two different runs
    assert len(row["d_loss"]) == 2 and len(set(row["d_loss"])) == 2
  last = rows[-1]
  assert len(last["modes"]) == 2 and len(last["mode_counts"]) == 2


def test_member_i_draws_the_keys_of_a_standalone_run_with_seed_plus_i():
  config = tiny_config(**{"population.size": 3, "seed": 5})
  gan = gan_trainer.Gan.from_config(config)
  roots = gan_trainer.run_root(gan, config.seed)
  for i in range(3):
    member_root = jax.random.key_data(roots[i])
    assert np.array_equal(member_root, jax.random.key_data(rng.root_key(5 + i)))
    assert np.array_equal(
      gan.sample_indices(roots[i], 7), gan.sample_indices(rng.root_key(5 + i), 7)
    )


def test_member_i_matches_a_standalone_run_up_to_float_rounding():
  # Not bit for bit: vmap batches the matmuls, which rounds differently (README).
  member = train_members(tiny_config(setd=True, **POPULATION), member=1)
  alone = train_members(tiny_config(setd=True, seed=1))
  np.testing.assert_allclose(member, alone, rtol=1e-5, atol=1e-6)
  assert np.abs(member - train_members(tiny_config(setd=True, seed=2))).max() > 1e-3


def test_a_resumed_population_is_bit_identical(population_run, tmp_path):
  half = tiny_config(setd=True, **POPULATION, **{"train.num_steps": 40})
  gan_trainer.train_and_evaluate(half, str(tmp_path / "resumed"))
  gan_trainer.train_and_evaluate(tiny_config(setd=True, **POPULATION), str(tmp_path / "resumed"))
  digests = [
    [(r["step"], r["state_digest"], r["member_digests"]) for r in _rows(work_dir)]
    for work_dir in (population_run[0], tmp_path / "resumed")
  ]
  assert [step for step, _, _ in digests[0]] == [20, 40, 60]
  assert digests[0] == digests[1]


_RUN_SHARDED = """
import json, sys, jax, numpy as np
sys.path.insert(0, "tests")
from conftest import tiny_config
from test_population import train_state
assert jax.device_count() == 8
state = train_state(tiny_config(**{"population.size": 8}))
leaves = jax.tree.leaves((state.g_params, state.d_params))
np.save(sys.argv[1], np.concatenate([np.ravel(leaf) for leaf in leaves]))
layout = [
  {
    "shape": list(leaf.shape),
    "shard_shape": list(leaf.sharding.shard_shape(leaf.shape)),
    "members": sorted((s.index[0].start, s.index[0].stop) for s in leaf.addressable_shards),
  }
  for leaf in jax.tree.leaves(state)
]
with open(sys.argv[2], "w") as f:
  json.dump(layout, f)
"""


def test_a_population_sharded_over_8_devices_matches_one_device(tmp_path):
  out, layout = tmp_path / "members.npy", tmp_path / "layout.json"
  env = {
    **os.environ,
    "XLA_FLAGS": conftest.xla_flags_with("--xla_force_host_platform_device_count=8"),
  }
  result = subprocess.run(
    [sys.executable, "-c", _RUN_SHARDED, str(out), str(layout)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  # The members really were split (the helper replicates silently when they do not divide):
  # every array of the trained state holds one member per device, member i on its own device.
  leaves = json.loads(layout.read_text())
  assert leaves
  for leaf in leaves:
    assert leaf["shape"][0] == 8 and leaf["shard_shape"] == [1, *leaf["shape"][1:]], leaf
    assert leaf["members"] == [[i, i + 1] for i in range(8)], leaf
  np.testing.assert_allclose(
    np.load(out), train_members(tiny_config(**{"population.size": 8})), rtol=1e-5, atol=1e-6
  )


def test_population_rows_and_outputs(population_run):
  work_dir, final = population_run
  assert len(final["modes"]) == 2
  assert json.loads((work_dir / "config.json").read_text())["population"]["size"] == 2
  assert (work_dir / "samples" / "step_00000060.png").exists()
  assert not (work_dir / "cases").exists()  # cases are recorded for single runs only
