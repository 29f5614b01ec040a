"""Samplers: permutations, streaks, random access, device-count invariance, and every error."""

import itertools
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import gan
from jgen.core import rng
from jgen.core.rng import Stream
from jgen.data import feistel, samplers

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROOT_KEY = rng.root_key(0)
KINDS = "epoch_shuffle, explicit, full_batch, shuffle_once, streak, with_replacement"


def sampler_config(**fields):
  config = gan.get_config().sampler
  for name, value in fields.items():
    config[name] = value
  return config


def stream(config, *, n, b, num_rows, first_step=0, **kwargs):
  """int32[num_rows, global_batch] numpy: steps [first_step, first_step + num_rows)."""
  sample = samplers.make_sampler(config, num_examples=n, batch_size=b, **kwargs)
  steps = jnp.arange(first_step, first_step + num_rows, dtype=jnp.int32)
  return np.asarray(jax.jit(jax.vmap(sample, in_axes=(None, 0)))(ROOT_KEY, steps))


def run_lengths(values):
  """Lengths of the runs of equal consecutive entries of a 1-D sequence."""
  change = np.flatnonzero(values[1:] != values[:-1]) + 1
  return np.diff(np.concatenate([[0], change, [len(values)]]))


# --- Feistel permutation ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 4097])
def test_feistel_is_a_bijection_and_keys_give_different_orders(n):
  keys = jax.random.split(jax.random.key(7), 4)
  permute_all = jax.jit(jax.vmap(feistel.permute, in_axes=(0, None, None)), static_argnums=2)
  orders = np.asarray(permute_all(keys, jnp.arange(n), n))
  assert orders.dtype == np.int32
  for order in orders:
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
  if n >= 1000:
    for a, b in itertools.combinations(orders, 2):
      assert np.mean(a == b) < 0.01  # independent orders agree on ~1/n of the positions
    assert np.mean(orders[0] == np.arange(n)) < 0.01  # not close to the identity


@pytest.mark.parametrize("n", [2**31 - 1, 2**31])
def test_feistel_stays_in_range_and_injective_for_the_largest_n(n):
  positions = np.concatenate([np.arange(5000), n - 1 - np.arange(5000)]).astype(np.uint32)
  values = np.asarray(
    jax.jit(feistel.permute, static_argnums=2)(jax.random.key(0), jnp.asarray(positions), n)
  ).astype(np.int64)
  assert values.min() >= 0 and values.max() < n
  assert len(np.unique(values)) == len(positions)


# --- epoch_shuffle, shuffle_once -------------------------------------------------------------


@pytest.mark.parametrize("n, b", [(1000, 64), (960, 64), (10, 64)])
def test_each_epoch_of_epoch_shuffle_is_a_permutation(n, b):
  num_epochs = 3
  num_steps = -(-num_epochs * n // b)
  rows = stream(sampler_config(kind="epoch_shuffle"), n=n, b=b, num_rows=num_steps)
  epochs = rows.reshape(-1)[: num_epochs * n].reshape(num_epochs, n)
  for e, epoch in enumerate(epochs):
    np.testing.assert_array_equal(np.sort(epoch), np.arange(n))
    # The documented formula: epoch e is the Feistel permutation keyed by DATA_INDICES at e.
    key = rng.step_key(ROOT_KEY, Stream.DATA_INDICES, e)
    np.testing.assert_array_equal(epoch, feistel.permute(key, jnp.arange(n), n))
  for a, c in itertools.combinations(epochs, 2):
    assert not np.array_equal(a, c)
  # Within an epoch, consecutive batches never share a sample.
  epoch_of = (np.arange(num_steps * b) // n).reshape(num_steps, b)
  same_epoch_pairs = 0
  for s in range(num_steps - 1):
    if len(np.unique(epoch_of[s : s + 2])) == 1:
      same_epoch_pairs += 1
      assert not set(rows[s]) & set(rows[s + 1])
  assert same_epoch_pairs > 0 or b > n


def test_shuffle_once_repeats_epoch_zero_of_epoch_shuffle():
  n, b = 1000, 64
  num_steps = -(-3 * n // b)
  once = stream(sampler_config(kind="shuffle_once"), n=n, b=b, num_rows=num_steps)
  fresh = stream(sampler_config(kind="epoch_shuffle"), n=n, b=b, num_rows=num_steps)
  epochs = once.reshape(-1)[: 3 * n].reshape(3, n)
  np.testing.assert_array_equal(np.sort(epochs[0]), np.arange(n))
  np.testing.assert_array_equal(epochs[1], epochs[0])
  np.testing.assert_array_equal(epochs[2], epochs[0])
  np.testing.assert_array_equal(epochs[0], fresh.reshape(-1)[:n])


def test_epoch_arithmetic_is_exact_where_step_times_batch_passes_2_to_the_32():
  n, b = 999_983, 4099  # coprime, so every step lands at a different offset in its epoch
  steps = [0, 1, 123_456_789, 2**31 - 1]
  rows = [
    samplers.make_sampler(sampler_config(), num_examples=n, batch_size=b)(ROOT_KEY, s)
    for s in steps
  ]
  for s, row in zip(steps, rows, strict=True):
    epoch, position = np.divmod(s * b + np.arange(b, dtype=np.int64), n)  # exact in int64
    keys = jax.vmap(rng.step_key, in_axes=(None, None, 0))(
      ROOT_KEY, Stream.DATA_INDICES, jnp.asarray(epoch, jnp.uint32)
    )
    expected = jax.vmap(feistel.permute, in_axes=(0, 0, None))(keys, jnp.asarray(position), n)
    np.testing.assert_array_equal(row, expected)


# --- with_replacement, full_batch ------------------------------------------------------------


def test_with_replacement_is_uniform_and_repeats():
  n, b, num_steps = 1000, 64, 200
  rows = stream(sampler_config(kind="with_replacement"), n=n, b=b, num_rows=num_steps)
  assert rows.min() >= 0 and rows.max() < n
  # Birthday: 64 draws from 1000 repeat with probability ~0.87 per batch.
  assert sum(len(np.unique(row)) < b for row in rows) > num_steps // 2
  shared = [len(set(rows[s]) & set(rows[s + 1])) for s in range(num_steps - 1)]
  assert np.mean(shared) > 1  # ~4 expected; epoch shuffling would give 0
  counts = np.bincount(rows.reshape(-1) // 100, minlength=10)  # 1280 +- 34 per decile
  assert np.all(np.abs(counts - num_steps * b / 10) < 200)


def test_full_batch_is_every_example_every_step():
  config = sampler_config(kind="full_batch")
  assert samplers.global_batch_size(config, num_examples=37, batch_size=8) == 37
  assert samplers.global_batch_size(sampler_config(), num_examples=37, batch_size=8) == 8
  rows = stream(config, n=37, b=8, num_rows=3, first_step=5)
  np.testing.assert_array_equal(rows, np.tile(np.arange(37), (3, 1)))


# --- streak ----------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["epoch_shuffle", "with_replacement"])
def test_fixed_slot_streaks_last_exactly_l_steps_with_staggered_phases(base):
  n, b, length, num_steps = 100_000, 8, 4, 41
  config = sampler_config(kind="streak", streak_length=length, streak_base=base)
  rows = stream(config, n=n, b=b, num_rows=num_steps)
  for j in range(b):
    runs = run_lengths(rows[:, j])
    first_renewal = (-j) % length or length  # step 0 renews, then every (t + j) % L == 0
    assert runs[0] == first_renewal
    assert np.all(runs[1:-1] == length)
    assert 1 <= runs[-1] <= length
  # Staggering: B/L slots renew at every step after 0, never the whole batch at once.
  changed = np.sum(rows[1:] != rows[:-1], axis=1)
  np.testing.assert_array_equal(changed, np.full(num_steps - 1, b // length))


def test_fixed_batch_streaks_repeat_the_whole_batch_l_times():
  length, num_steps = 3, 30
  config = sampler_config(kind="streak", streak_length=length, streak_scope="batch")
  rows = stream(config, n=1000, b=16, num_rows=num_steps)
  for s in range(num_steps):
    np.testing.assert_array_equal(rows[s], rows[s - s % length])
  block_starts = rows[::length]
  assert all(not np.array_equal(a, c) for a, c in itertools.combinations(block_starts, 2))


def test_geometric_slot_streaks_have_mean_length_l():
  # Positions t * B + j < N stay in epoch 0, so a value changes exactly at a renewal.
  n, b, length, num_steps = 100_000, 16, 4, 2000
  config = sampler_config(kind="streak", streak_length=length, streak_dist="geometric")
  rows = stream(config, n=n, b=b, num_rows=num_steps)
  runs = np.concatenate([run_lengths(rows[:, j])[:-1] for j in range(b)])  # drop truncated
  # ~8000 runs of a geometric(1/4): the mean has sd ~0.04 and P(length 1) = 1/4 has sd ~0.005,
  # so these bounds sit > 10 sd out; a fixed-length streak or a wrong rate fails them.
  assert len(runs) > 6000
  assert abs(runs.mean() - length) < 0.5
  assert abs(np.mean(runs == 1) - 1 / length) < 0.05
  assert runs.max() > 4 * length


def test_geometric_batch_streaks_renew_the_whole_batch_together():
  length, num_steps = 4, 4000
  config = sampler_config(
    kind="streak", streak_length=length, streak_dist="geometric", streak_scope="batch"
  )
  rows = stream(config, n=100_000, b=8, num_rows=num_steps)
  changed = np.sum(rows[1:] != rows[:-1], axis=1)
  assert set(np.unique(changed)) == {0, 8}
  runs = run_lengths(np.concatenate([[0], np.cumsum(changed > 0)]))[:-1]
  assert abs(runs.mean() - length) < 0.75  # ~1000 runs: sd of the mean ~0.11


@pytest.mark.parametrize("base", ["epoch_shuffle", "with_replacement"])
def test_streak_length_one_is_the_base_sampler_bit_for_bit(base):
  n, b, num_steps = 50, 8, 20  # b does not divide n: batches straddle epochs
  expected = stream(sampler_config(kind=base), n=n, b=b, num_rows=num_steps, first_step=3)
  for scope, dist in itertools.product(["slot", "batch"], ["fixed", "geometric"]):
    config = sampler_config(
      kind="streak", streak_length=1, streak_base=base, streak_scope=scope, streak_dist=dist
    )
    got = stream(config, n=n, b=b, num_rows=num_steps, first_step=3)
    np.testing.assert_array_equal(got, expected, err_msg=f"{scope}/{dist}")


# --- random access and device-count invariance -----------------------------------------------

RANDOM_ACCESS_CONFIGS = {
  "epoch_shuffle": {},
  "with_replacement": {"kind": "with_replacement"},
  "streak_fixed": {"kind": "streak", "streak_length": 3},
  "streak_geometric": {
    "kind": "streak",
    "streak_length": 3,
    "streak_dist": "geometric",
    "streak_base": "with_replacement",
  },
}


@pytest.mark.parametrize("name", sorted(RANDOM_ACCESS_CONFIGS))
def test_any_step_computed_alone_equals_the_vmapped_and_scanned_stream(name):
  n, b, num_steps = 100, 16, 25
  sample = samplers.make_sampler(
    sampler_config(**RANDOM_ACCESS_CONFIGS[name]), num_examples=n, batch_size=b
  )
  one_step = jax.jit(sample)
  alone = np.stack([one_step(ROOT_KEY, s) for s in reversed(range(num_steps))][::-1])
  steps = jnp.arange(num_steps, dtype=jnp.int32)
  vmapped = np.asarray(jax.jit(jax.vmap(sample, in_axes=(None, 0)))(ROOT_KEY, steps))
  scan = jax.jit(lambda key: jax.lax.scan(lambda c, s: (c, sample(key, s)), None, steps)[1])
  np.testing.assert_array_equal(alone, vmapped)
  np.testing.assert_array_equal(np.asarray(scan(ROOT_KEY)), vmapped)
  far = [10**9, 2**31 - 1]
  np.testing.assert_array_equal(
    np.stack([one_step(ROOT_KEY, s) for s in far]),
    jax.jit(jax.vmap(sample, in_axes=(None, 0)))(ROOT_KEY, jnp.asarray(far, jnp.int32)),
  )


_MULTI_DEVICE_SCRIPT = """
import sys
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
sys.path.insert(0, {root!r})
from tests.test_samplers import RANDOM_ACCESS_CONFIGS, ROOT_KEY, sampler_config
from jgen.data import samplers

assert len(jax.devices()) == 8, jax.devices()
sharding = NamedSharding(Mesh(jax.devices(), ("data",)), P("data"))
rows = []
for name in sorted(RANDOM_ACCESS_CONFIGS):
  config = sampler_config(**RANDOM_ACCESS_CONFIGS[name])
  sample = samplers.make_sampler(config, num_examples=100, batch_size=16)
  one_step = jax.jit(sample, out_shardings=sharding)
  for step in range(12):
    row = one_step(ROOT_KEY, jnp.int32(step))
    assert len(row.sharding.device_set) == 8
    rows.append(np.asarray(row))
np.save({out!r}, np.stack(rows))
"""


def test_the_stream_is_the_same_on_1_and_8_devices(tmp_path):
  out = str(tmp_path / "stream_8_devices.npy")
  script = _MULTI_DEVICE_SCRIPT.format(root=str(ROOT), out=out)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  result = subprocess.run(
    [sys.executable, "-c", textwrap.dedent(script)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  expected = np.concatenate(
    [
      stream(sampler_config(**RANDOM_ACCESS_CONFIGS[name]), n=100, b=16, num_rows=12)
      for name in sorted(RANDOM_ACCESS_CONFIGS)
    ]
  )
  np.testing.assert_array_equal(np.load(out), expected)


# --- explicit --------------------------------------------------------------------------------


def test_explicit_reproduces_a_saved_stream(tmp_path):
  n, b, num_steps = 100, 16, 30
  recorded = stream(sampler_config(kind="with_replacement"), n=n, b=b, num_rows=num_steps)
  path = str(tmp_path / "stream.npy")
  np.save(path, recorded.astype(np.int64))
  config = sampler_config(kind="explicit", path=path)
  replayed = stream(config, n=n, b=b, num_rows=num_steps, num_steps=num_steps)
  np.testing.assert_array_equal(replayed, recorded)
  one_step = jax.jit(samplers.make_sampler(config, num_examples=n, batch_size=b))
  np.testing.assert_array_equal(one_step(ROOT_KEY, 17), recorded[17])


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "fields, match",
  [
    ({"kind": "nope"}, f"sampler.kind 'nope'; valid choices: {KINDS}"),
    ({"kind": "streak", "streak_length": 0}, "streak_length must be an integer >= 1"),
    ({"kind": "streak", "streak_scope": "x"}, "streak_scope 'x'; valid choices: batch, slot"),
    ({"kind": "streak", "streak_dist": "x"}, "streak_dist 'x'; valid choices: fixed, geometric"),
    (
      {"kind": "streak", "streak_base": "shuffle_once"},
      "streak_base 'shuffle_once'; valid choices: epoch_shuffle, with_replacement",
    ),
    ({"path": "stream.npy"}, "only read by sampler.kind='explicit'"),
    ({"kind": "explicit"}, "sampler.path, which is empty"),
    ({"kind": "explicit", "path": "/no/such/stream.npy"}, "does not exist"),
  ],
)
def test_bad_settings_raise_naming_the_fix(fields, match):
  with pytest.raises(ValueError, match=match):
    samplers.make_sampler(sampler_config(**fields), num_examples=100, batch_size=16)


def test_bad_sizes_raise():
  with pytest.raises(ValueError, match="num_examples"):
    samplers.make_sampler(sampler_config(), num_examples=0, batch_size=16)
  with pytest.raises(ValueError, match="batch_size"):
    samplers.make_sampler(sampler_config(), num_examples=10, batch_size=0)


@pytest.mark.parametrize(
  "array, match",
  [
    (np.zeros(16, np.int32), r"shape \(16,\); it must be 2-D"),
    (np.zeros((5, 8), np.int32), "8 indices per row; config.train.batch_size is 16"),
    (np.zeros((5, 16), np.float32), "dtype float32; it must hold integer indices"),
    (np.full((5, 16), 100, np.int64), r"indices in \[100, 100\], outside \[0, 100\)"),
    (np.full((5, 16), -1, np.int32), r"outside \[0, 100\)"),
    (np.zeros((5, 16), np.int32), "5 rows .steps., fewer than the 6 steps"),
    (np.zeros((0, 16), np.int32), "has no rows"),
  ],
)
def test_bad_explicit_streams_raise_naming_the_file(tmp_path, array, match):
  path = str(tmp_path / "stream.npy")
  np.save(path, array)
  with pytest.raises(ValueError, match=match) as error:
    samplers.make_sampler(
      sampler_config(kind="explicit", path=path), num_examples=100, batch_size=16, num_steps=6
    )
  assert path in str(error.value)


def test_explicit_stream_that_is_not_npy_raises(tmp_path):
  path = tmp_path / "stream.npy"
  path.write_text("not an array")
  with pytest.raises(ValueError, match=r"not a readable \.npy"):
    samplers.make_sampler(
      sampler_config(kind="explicit", path=str(path)), num_examples=100, batch_size=16
    )
