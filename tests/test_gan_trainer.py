"""The GAN trainer: determinism, bit-identical resume, outputs, failure handling."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from jgen.core import jsonl, rng
from jgen.run import loop, workdir
from jgen.trainers import gan as gan_trainer
from jgen.trainers import gan_step


def _rows(work_dir):
  return jsonl.read_rows(os.path.join(work_dir, "metrics.jsonl"))


def _digests(work_dir):
  return {row["step"]: row["state_digest"] for row in _rows(work_dir)}


def test_same_config_same_digests_and_another_seed_differs(tmp_path):
  config = tiny_config(setd=True)
  gan_trainer.train_and_evaluate(config, str(tmp_path / "a"))
  gan_trainer.train_and_evaluate(config, str(tmp_path / "b"))
  config.seed = 1
  gan_trainer.train_and_evaluate(config, str(tmp_path / "c"))
  a, b, c = (_digests(tmp_path / name) for name in "abc")
  assert sorted(a) == [20, 40, 60]
  assert a == b
  assert all(a[step] != c[step] for step in a)


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
  config = tiny_config(setd=True, **{"train.num_steps": 80})
  gan_trainer.train_and_evaluate(config, str(tmp_path / "straight"))
  # Half the run, then the same command with the full length resumes at step 40
  # (with another dispatch length, which must not matter either).
  half = tiny_config(setd=True, **{"train.num_steps": 40})
  gan_trainer.train_and_evaluate(half, str(tmp_path / "resumed"))
  assert max(_digests(tmp_path / "resumed")) == 40
  config.train.steps_per_dispatch = 7
  gan_trainer.train_and_evaluate(config, str(tmp_path / "resumed"))
  straight, resumed = _digests(tmp_path / "straight"), _digests(tmp_path / "resumed")
  assert straight == resumed
  assert [row["step"] for row in _rows(tmp_path / "resumed")] == [20, 40, 60, 80]


def test_a_crash_after_the_last_checkpoint_loses_nothing(tmp_path):
  config = tiny_config(**{"train.checkpoint_every": 40, "train.num_steps": 60})
  gan_trainer.train_and_evaluate(config, str(tmp_path / "straight"))
  crashed = tmp_path / "crashed"
  gan_trainer.train_and_evaluate(config, str(crashed))
  # Simulate a crash at step 60, after the row was logged, before its checkpoint.
  import shutil

  shutil.rmtree(crashed / "checkpoints" / "60")
  gan_trainer.train_and_evaluate(config, str(crashed))
  assert _digests(crashed) == _digests(tmp_path / "straight")
  assert [row["step"] for row in _rows(crashed)] == [20, 40, 60]


def test_outputs_of_a_run(tmp_path):
  config = tiny_config(setd=True)
  final = gan_trainer.train_and_evaluate(config, str(tmp_path))
  rows = _rows(tmp_path)
  assert [row["step"] for row in rows] == [20, 40, 60]
  for row in rows:
    for key in ("d_loss", "g_loss", "d_real_logit", "d_fake_logit", "steps_per_sec"):
      assert np.isfinite(row[key]), key
    assert len(row["state_digest"]) == 64
  evaluated = [row["step"] for row in rows if "modes" in row]
  assert evaluated == [40, 60]  # eval steps and, always, the last step
  assert final["step"] == 60 and 0 <= final["high_quality"] <= 1
  assert json.loads((tmp_path / "config.json").read_text())["model"]["set_size"] == 4
  assert sorted(os.listdir(tmp_path / "samples")) == ["step_00000040.png", "step_00000060.png"]
  assert (tmp_path / "metrics.png").read_bytes()[:4] == b"\x89PNG"
  assert os.listdir(tmp_path / "tensorboard")
  assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())[-1] == 60


def test_rerunning_a_finished_run_trains_nothing_and_reports_the_same(tmp_path):
  config = tiny_config()
  first = gan_trainer.train_and_evaluate(config, str(tmp_path))
  again = gan_trainer.train_and_evaluate(config, str(tmp_path))
  assert again["state_digest"] == _digests(tmp_path)[60]
  assert again["modes"] == first["modes"]
  assert len(_rows(tmp_path)) == 3


def test_resuming_with_another_config_is_refused_and_writes_nothing(tmp_path):
  gan_trainer.train_and_evaluate(tiny_config(**{"train.num_steps": 20}), str(tmp_path))
  before = {p: (tmp_path / p).read_bytes() for p in ("config.json", "metrics.jsonl")}
  with pytest.raises(workdir.WorkdirMismatchError, match=r"optimizer.learning_rate"):
    gan_trainer.train_and_evaluate(tiny_config(**{"optimizer.learning_rate": 1e-3}), str(tmp_path))
  assert before == {p: (tmp_path / p).read_bytes() for p in before}


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
  tmp_path, monkeypatch
):
  real_step = gan_step.train_step

  def poisoned_step(gan, state, root, data):
    new_state, metrics = real_step(gan, state, root, data)
    poison = jnp.where(state.step + 1 >= 27, jnp.nan, 1.0)  # step 27 goes bad
    return new_state, {**metrics, "g_loss": metrics["g_loss"] * poison}

  monkeypatch.setattr(gan_step, "train_step", poisoned_step)
  with pytest.raises(loop.NonFiniteError, match=r"step 27 .*checkpoint is step 20"):
    gan_trainer.train_and_evaluate(tiny_config(), str(tmp_path))
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert steps == [0, 20]  # the initial state, and the last good one
  assert [row["step"] for row in _rows(tmp_path)] == [20]


@pytest.mark.parametrize(
  "name,set_size",
  [("mlp", 1), ("deepsets", 4), ("attention", 4), ("pack", 4), ("minibatch_disc", 4),
   ("mbstd", 4)],
)  # fmt: skip
@pytest.mark.parametrize("loss", ["non_saturating", "hinge", "wgan_gp"])
def test_every_discriminator_and_loss_trains_to_finite_values(name, set_size, loss):
  config = tiny_config(
    **{"model.discriminator.name": name, "model.set_size": set_size, "loss.name": loss}
  )
  gan = gan_trainer.Gan.from_config(config)
  root = rng.root_key(0)
  state = gan_trainer.init_state(gan, root)
  state, metrics = loop.run_chunk(gan, state, root, gan_trainer.training_set(gan, root), length=5)
  assert int(state.step) == 5
  for key in gan_trainer.METRIC_NAMES:
    assert metrics[key].shape == (5,) and np.isfinite(metrics[key]).all(), key
  assert metrics["trace"].shape == (5, 3)
  before = gan_trainer.init_state(gan, root)
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before.g_params, state.g_params)
  assert any(jax.tree.leaves(moved)), "the generator did not train"


def test_sets_are_formed_by_the_packing_stream_not_the_batch_order():
  config = tiny_config(setd=True)
  gan = gan_trainer.Gan.from_config(config)
  x = jnp.arange(32 * 2, dtype=jnp.float32).reshape(32, 2)
  sets = gan_step.to_sets(gan, x, gan_step.set_order(gan, jax.random.key(0)))
  assert sets.shape == (8, 4, 2)
  assert sorted(np.asarray(sets).reshape(-1, 2)[:, 0].tolist()) == x[:, 0].tolist()
  assert not np.array_equal(np.asarray(sets).reshape(32, 2), np.asarray(x))
