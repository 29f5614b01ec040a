"""The GAN trainer: determinism, bit-identical resume, outputs, failure handling."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import UNRENDERED_PNG, pictures_rendered, tiny_config

from jgen.core import jsonl, rng
from jgen.run import loop, workdir
from jgen.trainers import gan as gan_trainer
from jgen.trainers import gan_step


def _rows(work_dir):
  return jsonl.read_rows(os.path.join(work_dir, "metrics.jsonl"))


def _digests(work_dir):
  return {row["step"]: row["state_digest"] for row in _rows(work_dir)}


@pytest.fixture(scope="module")
def setd_run(tmp_path_factory):
  """One finished tiny set-D run (60 steps), shared by the tests that only read it; its
  pictures are rendered (test_outputs_of_a_run reads them)."""
  work_dir = tmp_path_factory.mktemp("setd_run")
  with pictures_rendered():
    return work_dir, gan_trainer.train_and_evaluate(tiny_config(setd=True), str(work_dir))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """One finished tiny per-sample-D run (60 steps); a test that changes a run works on a copy."""
  work_dir = tmp_path_factory.mktemp("finished_run")
  return work_dir, gan_trainer.train_and_evaluate(tiny_config(), str(work_dir))


def _copy(run, to):
  shutil.copytree(run[0], to)
  return to


def test_another_seed_gives_other_digests(setd_run, tmp_path):
  # That the same config gives the same digests is shown by the resume below: its first 40
  # steps are a separate run of the same config, and must give setd_run's digests.
  config = tiny_config(setd=True)
  config.seed = 1
  gan_trainer.train_and_evaluate(config, str(tmp_path / "c"))
  a, c = _digests(setd_run[0]), _digests(tmp_path / "c")
  assert sorted(a) == [20, 40, 60]
  assert all(a[step] != c[step] for step in a)


def test_resume_is_bit_identical_to_an_uninterrupted_run(setd_run, tmp_path):
  # Half the run, then the same command with the full length resumes at step 40
  # (with another dispatch length, which must not matter either).
  half = tiny_config(setd=True, **{"train.num_steps": 40})
  gan_trainer.train_and_evaluate(half, str(tmp_path / "resumed"))
  assert max(_digests(tmp_path / "resumed")) == 40
  config = tiny_config(setd=True, **{"train.steps_per_dispatch": 7})
  gan_trainer.train_and_evaluate(config, str(tmp_path / "resumed"))
  straight, resumed = _digests(setd_run[0]), _digests(tmp_path / "resumed")
  assert straight == resumed
  assert [row["step"] for row in _rows(tmp_path / "resumed")] == [20, 40, 60]


def test_a_trainer_that_trains_again_traces_and_compiles_nothing_again(tmp_path, monkeypatch):
  """Its programs (initialization, training set, chunk) are kept on the trainer object, so a
  second run of one trainer in a process (a resume, a study's branches) reuses them."""
  traced = []
  real_init_state = gan_trainer._init_state
  monkeypatch.setattr(
    gan_trainer, "_init_state", lambda *args: traced.append(1) or real_init_state(*args)
  )
  config = tiny_config(**{"train.num_steps": 20})
  gan, root, data = gan_trainer.build(config)
  first = loop.train(gan, config, str(tmp_path / "first"), root, data)
  programs = dict(vars(gan)["_compiled"])
  assert {"init_state", "training_set", ("chunk", 10)} <= set(programs)
  second = loop.train(gan, config, str(tmp_path / "second"), root, data)
  assert traced == [1]
  assert vars(gan)["_compiled"] == programs  # the same objects: not built again
  assert all(program._cache_size() == 1 for program in programs.values())
  assert first["state_digest"] == second["state_digest"]


def test_a_crash_after_the_last_checkpoint_loses_nothing(finished_run, tmp_path):
  crashed = _copy(finished_run, tmp_path / "crashed")
  # Simulate a crash at step 60, after the row was logged, before its checkpoint.
  shutil.rmtree(crashed / "checkpoints" / "60")
  gan_trainer.train_and_evaluate(tiny_config(), str(crashed))
  assert _digests(crashed) == _digests(finished_run[0])
  assert [row["step"] for row in _rows(crashed)] == [20, 40, 60]


def test_outputs_of_a_run(setd_run):
  work_dir, final = setd_run
  rows = _rows(work_dir)
  assert [row["step"] for row in rows] == [20, 40, 60]
  for row in rows:
    for key in ("d_loss", "g_loss", "d_real_logit", "d_fake_logit", "steps_per_sec"):
      assert np.isfinite(row[key]), key
    assert len(row["state_digest"]) == 64
  evaluated = [row["step"] for row in rows if "modes" in row]
  assert evaluated == [40, 60]  # eval steps and, always, the last step
  assert final["step"] == 60 and 0 <= final["high_quality"] <= 1
  assert json.loads((work_dir / "config.json").read_text())["model"]["set_size"] == 4
  assert sorted(os.listdir(work_dir / "samples")) == ["step_00000040.png", "step_00000060.png"]
  assert (work_dir / "metrics.png").read_bytes()[:4] == b"\x89PNG"
  for picture in ("metrics.png", "samples/step_00000060.png"):  # rendered (setd_run)
    assert (work_dir / picture).read_bytes() != UNRENDERED_PNG, picture
  assert os.listdir(work_dir / "tensorboard")
  assert sorted(int(d) for d in os.listdir(work_dir / "checkpoints") if d.isdigit())[-1] == 60


def test_rerunning_a_finished_run_trains_nothing_and_reports_the_same(finished_run, tmp_path):
  work_dir = _copy(finished_run, tmp_path / "run")
  again = gan_trainer.train_and_evaluate(tiny_config(), str(work_dir))
  assert again["state_digest"] == _digests(work_dir)[60] == _digests(finished_run[0])[60]
  assert again["modes"] == finished_run[1]["modes"]
  assert len(_rows(work_dir)) == 3


def test_resuming_with_another_config_is_refused_and_writes_nothing(finished_run, tmp_path):
  work_dir = _copy(finished_run, tmp_path / "run")
  before = {p: (work_dir / p).read_bytes() for p in ("config.json", "metrics.jsonl")}
  with pytest.raises(workdir.WorkdirMismatchError, match=r"optimizer.learning_rate"):
    gan_trainer.train_and_evaluate(tiny_config(**{"optimizer.learning_rate": 1e-3}), str(work_dir))
  assert before == {p: (work_dir / p).read_bytes() for p in before}


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
  before = gan_trainer.init_state(gan, root)
  # A copy goes in: the chunk donates its input state.
  state = jax.tree.map(jnp.copy, before)
  state, metrics = loop.run_chunk(gan, state, root, gan_trainer.training_set(gan, root), length=5)
  assert int(state.step) == 5
  for key in gan_trainer.METRIC_NAMES:
    assert metrics[key].shape == (5,) and np.isfinite(metrics[key]).all(), key
  assert metrics["trace"].shape == (5, 3)
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
