"""Populations split over the CPU's cores: which devices a run uses, and that the split is real.

jgen.X commands give XLA one CPU device per core (parallel.split_cpu_into_cores); a population
is split over them by whole members; a single run keeps one device per process, so its digest
does not depend on the machine. Also the balanced training set (data.balanced)."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jgen import datasets
from jgen.core import parallel
from tests.conftest import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class FakeDevice:
  id: int
  process_index: int = 0
  platform: str = "cpu"


def devices(count, processes=1):
  return [FakeDevice(i, process_index=i * processes // count) for i in range(count)]


def split_by_jgen(monkeypatch, count: int) -> None:
  monkeypatch.setenv(parallel.CPU_SPLIT_ENV, str(count))
  monkeypatch.setenv("XLA_FLAGS", f"{parallel.HOST_DEVICES_FLAG}={count}")


def test_a_single_run_keeps_one_device_per_process_when_jgen_split_the_cpu(monkeypatch):
  split_by_jgen(monkeypatch, 4)
  assert [d.id for d in parallel.population_devices(1, devices=devices(4))] == [0]
  # Two processes of 2 devices each: one device of each process, as without the split.
  assert [d.id for d in parallel.population_devices(1, devices=devices(4, processes=2))] == [0, 2]


def test_devices_the_user_made_are_all_used_by_a_single_run(monkeypatch):
  monkeypatch.delenv(parallel.CPU_SPLIT_ENV, raising=False)
  assert len(parallel.population_devices(1, devices=devices(4))) == 4
  split_by_jgen(monkeypatch, 4)
  gpus = [FakeDevice(i, platform="gpu") for i in range(4)]
  assert len(parallel.population_devices(1, devices=gpus)) == 4
  # A process that inherited jgen's marker but whose XLA_FLAGS someone replaced: the devices
  # the flags now make are the user's.
  monkeypatch.setenv("XLA_FLAGS", f"{parallel.HOST_DEVICES_FLAG}=8")
  assert len(parallel.population_devices(1, devices=devices(8))) == 8
  assert parallel.user_xla_flags() == f"{parallel.HOST_DEVICES_FLAG}=8"


def test_a_population_takes_as_many_devices_as_split_its_members_evenly(monkeypatch):
  split_by_jgen(monkeypatch, 4)
  assert len(parallel.population_devices(8, devices=devices(4))) == 4
  assert len(parallel.population_devices(6, devices=devices(4))) == 3
  assert len(parallel.population_devices(7, devices=devices(4))) == 1
  assert len(parallel.population_devices(8, wanted=2, devices=devices(4))) == 2
  with pytest.raises(ValueError, match=r"population.devices=5 asks for more devices than the 4"):
    parallel.population_devices(8, wanted=5, devices=devices(4))


def test_the_split_is_one_device_per_core_unless_xla_flags_say_otherwise(monkeypatch):
  monkeypatch.delenv(parallel.CPU_SPLIT_ENV, raising=False)
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
  monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=true")
  parallel.split_cpu_into_cores()
  assert os.environ["XLA_FLAGS"].split() == [
    "--xla_gpu_deterministic_ops=true",
    f"{parallel.HOST_DEVICES_FLAG}=3",
  ]
  assert os.environ[parallel.CPU_SPLIT_ENV] == "3"
  monkeypatch.delenv(parallel.CPU_SPLIT_ENV)
  monkeypatch.setenv("XLA_FLAGS", f"{parallel.HOST_DEVICES_FLAG}=8")
  parallel.split_cpu_into_cores()
  assert os.environ["XLA_FLAGS"] == f"{parallel.HOST_DEVICES_FLAG}=8"
  assert parallel.CPU_SPLIT_ENV not in os.environ


SPLIT_SCRIPT = textwrap.dedent(
  """
  import jax
  from jax.sharding import PartitionSpec
  from jgen.trainers import gan as gan_trainer
  from tests.conftest import tiny_config

  assert jax.device_count() == 2, jax.devices()
  population = tiny_config(**{"population.size": 4})
  trainer, root, _ = gan_trainer.build(population)
  state = trainer.init_state(root)
  leaf = jax.tree.leaves(state.g_params)[0]
  # Members 0-1 on one device, 2-3 on the other: not a replicated copy on each.
  assert trainer.mesh.size == 2, trainer.mesh
  assert leaf.sharding.spec == PartitionSpec("data"), leaf.sharding
  assert sorted(s.data.shape[0] for s in leaf.addressable_shards) == [2, 2]
  single, _, _ = gan_trainer.build(tiny_config())
  assert single.mesh.size == 1, single.mesh
  print("split ok")
  """
)


def test_a_population_is_split_over_the_cores_and_a_single_run_is_not():
  env = {
    **os.environ,
    "XLA_FLAGS": f"{parallel.HOST_DEVICES_FLAG}=2",
    parallel.CPU_SPLIT_ENV: "2",
    "PYTHONPATH": ROOT,
  }
  result = subprocess.run(
    [sys.executable, "-c", SPLIT_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "split ok" in result.stdout


def test_a_balanced_training_set_holds_mode_i_mod_k():
  config = tiny_config(**{"data.balanced": True, "data.num_train": 24})
  data = datasets.get_dataset(config.data)
  points = np.asarray(data.training_set(jax.random.key(0), 24))
  means = data.mixture.means_Kx2
  nearest = np.linalg.norm(points[:, None] - means[None], axis=-1).argmin(axis=1)
  np.testing.assert_array_equal(nearest, np.arange(24) % 8)


def test_balanced_data_refuses_what_it_cannot_give():
  with pytest.raises(ValueError, match="multiple of the 8 modes of ring8, got 12"):
    datasets.get_dataset(tiny_config(**{"data.balanced": True, "data.num_train": 12}).data)
  with pytest.raises(ValueError, match=r"set data\.fresh_samples=False"):
    datasets.get_dataset(tiny_config(**{"data.balanced": True, "data.fresh_samples": True}).data)
  images = tiny_config(**{"data.balanced": True}).data
  with images.unlocked():
    images.name = "stacked_digits"
  with pytest.raises(ValueError, match=r"data\.balanced applies to the 2D mixtures"):
    datasets.get_dataset(images)
