"""PacGAN's protocol (configs/pacgan.py): maxout D, BatchNorm G, simultaneous updates, packs,
and the Table 1 study; and that none of it changes an existing config's results."""

import json
import math
import os
import subprocess
import sys

import conftest
import jax
import jax.numpy as jnp
import locked
import numpy as np
import optax
import pytest

from configs import gan, gan_setd, pacgan, study_pacgan_table1
from jgen import models
from jgen.core import jsonl, optimizers, rng
from jgen.models import maxout
from jgen.models.mlp import BatchNorm
from jgen.run import loop, trace
from jgen.studies import pacgan_table1 as table1
from jgen.trainers import gan as gan_trainer
from jgen.trainers import gan_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_pacgan(m=2, **overrides):
  """configs/pacgan.py with tiny nets and data: seconds, not hours."""
  config = pacgan.get_config(f"m={m}")
  config.data.num_train = 300
  config.model.generator.width = 16
  config.model.generator.depth = 2
  config.model.discriminator.width = 8
  config.model.discriminator.maxout_pieces = 3
  config.train.batch_size = 10
  config.train.num_steps = 40
  config.train.steps_per_dispatch = 10
  config.train.log_every = 20
  config.train.eval_every = 20
  config.train.checkpoint_every = 20
  config.eval.num_samples = 200
  config.eval.bn_refresh_batches = 3
  config.update_from_flattened_dict(overrides)
  return config


def _rows(work_dir):
  return jsonl.read_rows(os.path.join(work_dir, "metrics.jsonl"))


def test_the_config_is_the_official_protocol():
  config = pacgan.get_config("data=grid25,m=3")
  assert (config.data.name, config.model.set_size, config.train.num_steps) == ("grid25", 3, 400_000)
  assert (config.train.packing, config.train.update_rule, config.train.batch_size) == (
    "packs",
    "simultaneous",
    100,
  )
  g, d = config.model.generator, config.model.discriminator
  assert (g.width, g.depth, g.batch_norm, g.init) == (400, 4, True, "normal_0.02")
  assert (d.name, d.width, d.depth, d.maxout_pieces, d.init) == (
    "maxout_pack",
    200,
    3,
    5,
    "normal_0.02",
  )
  # PacGAN's Adam(beta1=0.8) under blocks >= aa064519 (the default) is optax's b1 = 0.8;
  # under older blocks, which wrote one minus the decay, b1 = 0.2 (docs/pacgan.md).
  assert (config.optimizer.learning_rate, config.optimizer.b1, config.optimizer.b2) == (
    1e-4,
    0.8,
    0.999,
  )
  v7 = pacgan.get_config("data=grid25,m=3,adam=blocks_v7")
  assert (v7.optimizer.b1, v7.optimizer.b2) == (0.2, 0.999)
  # Nothing else differs between the two readings.
  v7.optimizer.b1 = config.optimizer.b1
  assert v7.to_dict() == config.to_dict()
  study = study_pacgan_table1.get_config("adam=blocks_v7")
  assert (
    study.base.optimizer.b1 == 0.2 and study_pacgan_table1.get_config().base.optimizer.b1 == 0.8
  )
  with pytest.raises(ValueError, match="valid: \\(1, 2, 3, 4\\)"):
    pacgan.get_config("m=5")
  with pytest.raises(ValueError, match="valid: blocks_v8, blocks_v7"):
    pacgan.get_config("adam=v9")


def _blocks_adam(version, grads, learning_rate, beta1, beta2, epsilon=1e-8):
  """blocks' Adam.compute_step written out (blocks/algorithms/__init__.py): "v7" as at
  699e2704, the last master commit before aa064519; "v8" from aa064519 on (as at 55d3159,
  the merge of pull request 1176). Returns the parameter after each step, from 0."""
  decay = float(np.float32(1 - 1e-8))  # v7's default decay_factor, a float32 shared variable
  mean = variance = param = np.zeros_like(grads[0], np.float64)
  params = []
  for t1, grad in enumerate(grads, start=1):
    if version == "v7":
      beta_1t = 1.0 - (1.0 - beta1) * decay ** (t1 - 1)
      rate = learning_rate * np.sqrt(1.0 - (1.0 - beta2) ** t1) / (1.0 - (1.0 - beta_1t) ** t1)
      mean = beta_1t * grad + (1.0 - beta_1t) * mean
      variance = beta2 * grad**2 + (1.0 - beta2) * variance
    else:
      beta_1t = beta1 * 1.0 ** (t1 - 1)  # decay_factor 1 from 8607adb on
      rate = learning_rate * np.sqrt(1.0 - beta2**t1) / (1.0 - beta_1t**t1)
      mean = beta_1t * mean + (1.0 - beta_1t) * grad
      variance = beta2 * variance + (1.0 - beta2) * grad**2
    param = param - rate * mean / (np.sqrt(variance) + epsilon)
    params.append(param)
  return np.stack(params)


def _optax_path(optimizer_config, grads):
  optimizer = optimizers.make_optimizer(optimizer_config)
  param = jnp.zeros(grads.shape[1:], jnp.float32)
  state, params = optimizer.init(param), []
  for grad in grads:
    updates, state = optimizer.update(jnp.asarray(grad, jnp.float32), state, param)
    param = optax.apply_updates(param, updates)
    params.append(np.asarray(param))
  return np.stack(params)


@pytest.mark.parametrize(
  ("switch", "version", "blocks_beta2"),
  # PacGAN leaves beta2 at the installed blocks' default: 0.999 in v8, 0.001 in v7.
  [("adam=blocks_v8", "v8", 0.999), ("adam=blocks_v7", "v7", 0.001)],
)
def test_each_adam_switch_steps_as_its_blocks_version_does(switch, version, blocks_beta2):
  # Gradients of a tiny problem whose scale changes (so bias correction and the moments show).
  grads = np.random.default_rng(0).normal(size=(30, 6)) * np.linspace(0.1, 3.0, 30)[:, None]
  config = pacgan.get_config(switch).optimizer
  lr = config.learning_rate
  expected = _blocks_adam(version, grads, lr, beta1=0.8, beta2=blocks_beta2)
  # blocks adds epsilon to sqrt(v) before bias correction, optax after (up to ~3e-6 of a
  # step here), and optax runs in float32: measured 7e-6 of the path's scale; the two
  # readings differ by 0.25-0.33 of it.
  scale = np.abs(expected).max()
  np.testing.assert_allclose(_optax_path(config, grads), expected, rtol=0, atol=3e-5 * scale)
  # The other reading is measurably a different optimizer on the same gradients.
  other = "v7" if version == "v8" else "v8"
  other_path = _blocks_adam(other, grads, lr, beta1=0.8, beta2=0.001 if other == "v7" else 0.999)
  assert np.abs(other_path - expected).max() > 0.05 * scale


def test_maxout_shapes_parameter_count_and_grouping():
  x = jax.random.normal(jax.random.key(0), (7, 3))
  layer = maxout.LinearMaxout(width=4, pieces=5)
  variables = layer.init(jax.random.key(1), x)
  assert variables["params"]["Dense_0"]["kernel"].shape == (3, 20)
  h = layer.apply(variables, x)
  assert h.shape == (7, 4)
  dense = x @ variables["params"]["Dense_0"]["kernel"] + variables["params"]["Dense_0"]["bias"]
  np.testing.assert_allclose(h, dense.reshape(7, 4, 5).max(-1), rtol=1e-6)
  # The paper's D: shapes only (jax.eval_shape), not 400,000 initialized weights per pack size.
  for m, expected in ((1, 405_201), (2, 407_201), (4, 411_201)):
    d = maxout.MaxoutPack(200, 3, 5, "normal_0.02")
    params = jax.eval_shape(d.init, jax.random.key(0), jnp.zeros((1, m, 2)))
    assert sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params)) == expected
    assert jax.eval_shape(d.apply, params, jnp.ones((6, m, 2))).shape == (6,)


def test_normal_init_has_std_0_02_and_zero_biases():
  params = maxout.MaxoutPack(200, 3, 5, "normal_0.02").init(jax.random.key(0), jnp.zeros((1, 1, 2)))
  kernel = params["params"]["MaxoutMLP_0"]["LinearMaxout_1"]["Dense_0"]["kernel"]
  assert abs(float(kernel.std()) - 0.02) < 0.001
  biases = [
    leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params) if "bias" in str(path)
  ]
  assert biases and all(float(jnp.abs(b).max()) == 0.0 for b in biases)
  config = pacgan.get_config()
  config.model.generator.init = "uniform"
  with pytest.raises(ValueError, match=r"valid: flax, normal_0\.02"):
    models.make_generator(config.model)


def test_packing_concatenates_the_m_samples_in_slot_order():
  x = jnp.arange(3 * 4 * 2.0).reshape(3, 4, 2)
  np.testing.assert_array_equal(
    maxout.concat_slots(x), jnp.concatenate([x[:, slot] for slot in range(4)], axis=-1)
  )
  config = tiny_pacgan(m=3)
  g, root, packs = gan_trainer.build(config)
  assert packs.shape == (300, 3, 2)
  # Every pack slot is a with-replacement draw from the same 300 points.
  points = g.data.training_set(rng.stream_key(root, rng.Stream.TRAIN_SET), 300)
  table = gan_step.pack_table(g, jax.random.fold_in(rng.stream_key(root, rng.Stream.TRAIN_SET), 1))
  # (the points drawn outside jit may differ from those inside in the last bit)
  np.testing.assert_allclose(packs, points[table], rtol=0, atol=1e-6)
  assert len({tuple(np.asarray(t)) for t in table.T}) == 3  # slots drawn independently
  # Fakes come one generator pass per slot, [slot, pack, D]; pack p holds fake[:, p] in order.
  fake = jnp.arange(3 * 10 * 2.0).reshape(3, 10, 2)
  sets = gan_step.fakes_to_sets(g, fake, None)
  np.testing.assert_array_equal(sets[4], fake[:, 4])


def test_batch_norm_statistics_per_slot_in_training_and_population_statistics_at_evaluation():
  x = jax.random.normal(jax.random.key(0), (3, 50, 4)) * jnp.array([1.0, 2.0, 3.0])[:, None, None]
  bn = BatchNorm()
  variables = bn.init(jax.random.key(1), x, True)
  y, updates = bn.apply(variables, x, True, mutable=["batch_stats"])
  # Each slot normalized by its own statistics (epsilon 1e-4 inside the stdev).
  mean, stdev = x.mean(1, keepdims=True), jnp.sqrt(x.var(1, keepdims=True) + 1e-4)
  np.testing.assert_allclose(y, (x - mean) / stdev, rtol=1e-5, atol=1e-5)
  stats = updates["batch_stats"]
  np.testing.assert_allclose(stats["mean"], 0.05 * mean.mean((0, 1)), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(stats["stdev"], 0.95 + 0.05 * stdev.mean((0, 1)), rtol=1e-5)
  # Evaluation: population statistics, no epsilon; a sample's output ignores its batch.
  evaluated = bn.apply({**variables, "batch_stats": stats}, x[0], False)
  np.testing.assert_allclose(evaluated, (x[0] - stats["mean"]) / stats["stdev"], rtol=1e-6)
  alone = bn.apply({**variables, "batch_stats": stats}, x[0, :1], False)
  np.testing.assert_array_equal(alone, evaluated[:1])


def test_generator_statistics_live_in_the_state_update_are_digested_and_resume_bit_identically(
  tmp_path,
):
  config = tiny_pacgan()
  g, root, data = gan_trainer.build(config)
  state = g.init_state(root)
  assert set(state.g_params) == {"params", "batch_stats"}
  assert set(state.g_opt_state[0].mu) == {"params"}  # the optimizer never sees statistics
  # Ten steps in one chunk, the program the runs below use (the chunk donates its input: a copy).
  stepped, _ = loop.run_chunk(g, jax.tree.map(jnp.copy, state), root, data, 10)
  before, after = state.g_params["batch_stats"], stepped.g_params["batch_stats"]
  assert all(
    not np.array_equal(a, b)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
  )
  # Only the statistics changed: the digest still sees it.
  nudged = stepped.replace(
    g_params={**stepped.g_params, "batch_stats": jax.tree.map(lambda v: v + 1e-3, after)}
  )
  assert trace.part_digests(nudged)["g_params"] != trace.part_digests(stepped)["g_params"]
  # Evaluation uses the (refreshed) population statistics, not the evaluation batch's own.
  samples, row = g.evaluate(stepped, root)
  assert samples.shape == (200, 2) and "modes" in row

  gan_trainer.train_and_evaluate(config, str(tmp_path / "straight"))
  half = tiny_pacgan(**{"train.num_steps": 20})
  gan_trainer.train_and_evaluate(half, str(tmp_path / "resumed"))
  gan_trainer.train_and_evaluate(config, str(tmp_path / "resumed"))
  straight, resumed = _rows(tmp_path / "straight"), _rows(tmp_path / "resumed")
  assert [r["state_digest"] for r in straight] == [r["state_digest"] for r in resumed]
  assert [r["step"] for r in resumed] == [20, 40]


def _reference_step(g, state, root, data):
  """One simultaneous update written out by hand: both gradients at the old parameters."""
  _, real_sets = gan_step.draw_real(g, root, data, 0)
  z = jax.random.normal(rng.step_key(root, rng.Stream.Z, 0), (g.set_size, g.batch_size, g.z_dim))
  stats = state.g_params["batch_stats"]

  def fakes(g_params):
    fake, _ = g.generator.apply(
      {**g_params, "batch_stats": stats}, z, train=True, mutable=["batch_stats"]
    )
    return jnp.swapaxes(fake, 0, 1)

  def d_loss(d_params, g_params):
    real = g.discriminator.apply(d_params, real_sets)
    fake = g.discriminator.apply(d_params, fakes(g_params))
    return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))

  def g_loss(d_params, g_params):
    return jnp.mean(jax.nn.softplus(-g.discriminator.apply(d_params, fakes(g_params))))

  trainable = {"params": state.g_params["params"]}
  d_grads = jax.grad(d_loss, 0)(state.d_params, trainable)
  g_grads = jax.grad(g_loss, 1)(state.d_params, trainable)
  lr = 0.5  # plain SGD: new = old - lr * grad
  return (
    jax.tree.map(lambda p, dp: p - lr * dp, state.d_params, d_grads),
    jax.tree.map(lambda p, dp: p - lr * dp, trainable, g_grads),
  )


def test_the_simultaneous_rule_takes_both_gradients_at_the_old_parameters():
  # Flax's larger initial D weights make D's own step move G's gradient visibly.
  sgd = {
    "optimizer.name": "sgd",
    "optimizer.learning_rate": 0.5,
    "model.discriminator.init": "flax",
  }
  results = {}
  for rule in ("simultaneous", "alternating"):
    g, root, data = gan_trainer.build(tiny_pacgan(**sgd, **{"train.update_rule": rule}))
    state = g.init_state(root)
    results[rule] = jax.jit(
      lambda s, g=g, root=root, data=data: gan_step.train_step(g, s, root, data)
    )(state)[0]
  # Jitted as one program: the same arithmetic, without thousands of eager dispatches.
  ref_d, ref_g = jax.jit(lambda s, g=g, root=root, data=data: _reference_step(g, s, root, data))(
    state
  )

  def max_difference(a, b):
    return max(
      float(jnp.abs(x - y).max())
      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )

  simultaneous, alternating = results["simultaneous"], results["alternating"]
  assert max_difference(simultaneous.d_params, ref_d) < 1e-6
  simultaneous_error = max_difference({"params": simultaneous.g_params["params"]}, ref_g)
  assert simultaneous_error < 1e-6
  # The alternating rule's D step is the same; its G step sees the new D, so it differs.
  assert max_difference(alternating.d_params, ref_d) < 1e-6
  assert max_difference({"params": alternating.g_params["params"]}, ref_g) > 1e-4


def tiny_configs_before_this_change():
  """configs/gan.py and gan_setd.py shrunk, with their final digests from the code before
  PacGAN's options existed (recorded on CPU at commit 45474c1; the same digests under the lock,
  jax 0.10.2, flax 0.12.8, optax 0.2.8, numpy 2.4.6)."""
  for module, digest in (
    (gan, "e6f6043b0199be0945520b5991c8d27ecd5aff7aae037bb46f57a9608c17c55a"),
    (gan_setd, "67cf8da189e5394e32b246b8521506c2e2916134307da050ab90947e88d710ae"),
  ):
    c = module.get_config()
    c.data.num_train = 500
    c.model.generator.width = 16
    c.model.generator.depth = 2
    c.model.discriminator.width = 16
    c.model.discriminator.depth = 2
    c.train.batch_size = 32
    c.train.num_steps = 30
    c.train.steps_per_dispatch = 15
    c.train.log_every = 15
    c.train.eval_every = 30
    c.train.checkpoint_every = 30
    c.eval.num_samples = 200
    yield module.__name__, c, digest


def test_the_digest_check_knows_the_versions_it_was_recorded_under(monkeypatch):
  pins = locked.locked_versions()
  assert set(pins) == set(locked.NUMERICS) and all(pins.values())
  real = locked.metadata.version
  monkeypatch.setattr(
    locked.metadata, "version", lambda name: "0.0.1" if name == "jax" else real(name)
  )
  assert locked.version_mismatches()[0] == f"jax {pins['jax']} -> 0.0.1"


_FINAL_DIGESTS = """
import json, sys
sys.path.insert(0, "tests")
from conftest import pictures_unrendered
from test_pacgan import tiny_configs_before_this_change
from jgen.trainers import gan as gan_trainer
digests = {}
with pictures_unrendered():  # a digest is the state's; no picture is read
  for name, config, _ in tiny_configs_before_this_change():
    digest = gan_trainer.train_and_evaluate(config, sys.argv[1] + "/" + name)["state_digest"]
    digests[name] = digest
print(json.dumps(digests))
"""


@locked.recorded_under_the_lock
def test_existing_configs_give_the_same_final_rows_as_before(tmp_path):
  """The digests were recorded at XLA's default compiler settings, which the rest of the suite
  changes (tests/conftest.py TEST_XLA_FLAGS): the runs go in a process of their own without."""
  expected = {}
  for name, config, digest in tiny_configs_before_this_change():
    # configs/gan.py declares PacGAN's options (1dbd5dd) at the values these digests ran with.
    assert (config.train.packing, config.train.update_rule) == ("grouped", "alternating")
    assert (config.model.generator.batch_norm, config.model.generator.init) == (False, "flax")
    expected[name] = digest
  flags = os.environ.get("XLA_FLAGS", "").replace(conftest.TEST_XLA_FLAGS, "").strip()
  env = {**os.environ, "XLA_FLAGS": flags, "JGEN_TEST_XLA_DEFAULT": "1"}
  result = subprocess.run(
    [sys.executable, "-c", _FINAL_DIGESTS, str(tmp_path)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.loads(result.stdout.splitlines()[-1]) == expected


def tiny_study():
  config = study_pacgan_table1.get_config("runlocal")
  config.study.data = "ring8"
  config.study.pack_sizes = "2"
  config.base.data.num_train = 200
  config.base.model.generator.width = 8
  config.base.model.generator.depth = 2
  config.base.model.discriminator.width = 4
  config.base.train.batch_size = 10
  config.base.train.num_steps = 20
  config.base.train.steps_per_dispatch = 10
  config.base.train.eval_every = 10
  config.base.train.log_every = 10
  config.base.train.checkpoint_every = 20
  config.base.eval.num_samples = 100
  return config


def test_table1_runlocal_pipeline_writes_the_side_by_side_table(tmp_path):
  config = tiny_study()
  work_dir = str(tmp_path / "study")
  report = table1.run_study(config, work_dir)
  (cell,) = report["cells"]
  assert (cell["name"], cell["m"], cell["seeds"], cell["steps"]) == ("ring8-m2", 2, 2, 20)
  assert cell["modes"]["paper"] == {"mean": 7.9, "standard_error": 0.1}
  assert cell["high_quality"]["paper"]["mean"] == 95.6
  with open(os.path.join(work_dir, "report.json")) as f:
    assert json.load(f) == report
  with open(os.path.join(work_dir, table1.REPORT_FILE)) as f:
    text = f.read()
  assert "| data | m | steps | seeds | modes | paper |" in text
  assert "| ring8 | 2 | 20 | 2 |" in text and "7.9 ± 0.1" in text and "0.07 ± 0.03" in text
  # A finished cell is never rerun: the second call only rebuilds the report.
  mtime = os.path.getmtime(os.path.join(work_dir, "cells", "ring8-m2", "outcome.json"))
  assert table1.run_study(config, work_dir) == report
  assert os.path.getmtime(os.path.join(work_dir, "cells", "ring8-m2", "outcome.json")) == mtime


def test_cells_far_from_the_paper_are_marked():
  config = study_pacgan_table1.get_config()
  assert [c["name"] for c in table1.cells(config)] == [
    f"{data}-m{m}" for data in ("ring8", "grid25") for m in (1, 2, 3, 4)
  ]
  run = table1.cell_config(config, {"name": "grid25-m3", "data": "grid25", "m": 3})
  assert (run.data.name, run.model.set_size, run.population.size) == ("grid25", 3, 10)
  published = table1.published_values(config, "ring8", 2)

  def summary(modes):
    outcomes = [{"modes": v, "high_quality": 0.956, "reverse_kl": 0.07} for v in modes]
    saved = {"outcomes": outcomes, "steps": 10}
    return table1.cell_summary({"name": "x", "data": "ring8", "m": 2}, saved, published)

  assert summary([8, 8, 8, 8])["differs_from_paper"] == []  # 0.1 / 0.1 = 1 error apart
  far = summary([6, 6, 7, 6])
  assert far["differs_from_paper"] == ["modes"] and far["modes"]["combined_errors_apart"] > 2
