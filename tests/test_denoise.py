"""The denoising trainer and its objectives: exact fields, schedules, the discriminator flow,
resume, data order, populations and replay."""

import functools
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dflow, flow
from jgen.collapse import recorder
from jgen.core import jsonl, rng
from jgen.data import samplers
from jgen.losses import denoising
from jgen.models import denoisers
from jgen.replays import replay
from jgen.run import loop, trace, workdir
from jgen.trainers import denoise


def tiny_config(make=flow.get_config, **overrides):
  """A denoiser that trains in seconds: small net, 500 points, 60 steps, cheap sampling."""
  config = make()
  config.data.num_train = 500
  config.model.width = 16
  config.model.depth = 2
  config.train.batch_size = 32
  config.train.num_steps = 60
  config.train.steps_per_dispatch = 10
  config.train.log_every = 20
  config.train.eval_every = 40
  config.train.checkpoint_every = 20
  config.eval.num_samples = 200
  config.eval.sample_batch = 200
  config.sampling.num_steps = 4
  config.update_from_flattened_dict(overrides)
  return config


def _digests(work_dir):
  rows = jsonl.read_rows(os.path.join(work_dir, "metrics.jsonl"))
  return {row["step"]: row["state_digest"] for row in rows}


# --- objectives ------------------------------------------------------------------------------

MU = jnp.asarray([3.0, -1.0])
SCALE = 0.5  # the target N(MU, SCALE^2 I)


def exact_velocity(x, t_B):
  """The marginal field of the straight path from N(0, I) to N(MU, SCALE^2 I), pairs drawn
  independently: x_t ~ N(t MU, sigma_t^2 I), sigma_t^2 = (1 - t)^2 + t^2 SCALE^2, and each
  point moves as x_t = t MU + sigma_t x0, so dx/dt = MU + sigma_t' / sigma_t (x - t MU)."""
  t = t_B[:, None]
  sigma2 = (1 - t) ** 2 + t**2 * SCALE**2
  return MU + (-(1 - t) + t * SCALE**2) / sigma2 * (x - t * MU)


def test_flow_matching_loss_is_zero_for_the_exact_field_of_a_deterministic_coupling():
  keys = jax.random.split(jax.random.key(0), 2)
  x0 = jax.random.normal(keys[0], (4096, 2))
  t = jax.random.uniform(keys[1], (4096,))
  # N(0, I) -> N(MU, I) by the shift x1 = x0 + MU: straight lines that never cross, whose
  # velocity is MU everywhere.
  shifted = denoising.flow_matching_loss(lambda x, t: jnp.broadcast_to(MU, x.shape), x0, x0 + MU, t)
  assert float(shifted) < 1e-10
  # Independent pairs: the exact marginal field minimizes the loss (its minimum is not 0).
  x1 = MU + SCALE * jax.random.normal(jax.random.key(2), (4096, 2))
  exact = denoising.flow_matching_loss(exact_velocity, x0, x1, t)
  for wrong in (lambda x, t: exact_velocity(x, t) * 1.1, lambda x, t: exact_velocity(x, t) + 0.1):
    assert float(denoising.flow_matching_loss(wrong, x0, x1, t)) > float(exact) + 1e-3


@pytest.mark.parametrize("method, steps, tolerance", [("euler", 1000, 5e-3), ("heun", 50, 1e-3)])
def test_integrating_the_exact_field_transports_each_point_to_its_target(method, steps, tolerance):
  x0 = jax.random.normal(jax.random.key(0), (512, 2))
  x1 = denoisers.integrate(exact_velocity, x0, jnp.linspace(0.0, 1.0, steps + 1), method)
  np.testing.assert_allclose(x1, MU + SCALE * x0, atol=tolerance)
  np.testing.assert_allclose(x1.mean(0), MU, atol=0.1)


def test_noise_prediction_targets_follow_the_schedule_in_closed_form():
  s = jnp.asarray([0.0, 0.1, 0.5, 1.0])
  a = np.exp(-(0.1 * np.asarray(s) + 0.5 * 19.9 * np.asarray(s) ** 2))
  np.testing.assert_allclose(denoising.vp_alpha_bar(s), a, rtol=1e-6)
  # The continuous schedule is the limit of DDPM's 1,000 linear betas 1e-4 .. 0.02.
  betas = np.linspace(1e-4, 0.02, 1000)
  for level in (0.1, 0.5, 1.0):
    discrete = np.log(np.prod(1 - betas[: int(level * 1000)]))
    continuous = np.log(denoising.vp_alpha_bar(jnp.float32(level)))
    assert abs(continuous - discrete) < 0.08  # sum(beta^2)/2, dropped by exp(-sum(beta))
  x = jnp.full((4, 3), 0.7)
  eps = jax.random.normal(jax.random.key(0), (4, 3))
  x_s = denoising.noise_prediction_inputs(x, eps, s)
  np.testing.assert_allclose(
    x_s, np.sqrt(a)[:, None] * 0.7 + np.sqrt(1 - a)[:, None] * eps, rtol=1e-5
  )
  # The target is the noise itself: a predictor that knows it scores 0, and denoises exactly.
  oracle = lambda x_in, s_B: eps[1:2]
  assert float(denoising.noise_prediction_loss(oracle, x[1:2], eps[1:2], s[1:2])) == 0.0
  np.testing.assert_allclose(denoising.tweedie(oracle, x_s[1:2], 0.1), x[1:2], atol=1e-5)


def test_sampling_costs_are_counted():
  assert denoising.Sampling("heun", 25).evaluations_per_sample("flow_matching") == 50
  assert denoising.Sampling("euler", 10).evaluations_per_sample("noise_prediction") == 11
  assert denoising.Sampling("ancestral", 100).evaluations_per_sample("noise_prediction") == 100
  den, root, _ = denoise.build(tiny_config())
  _, row = den.evaluate(den.init_state(root), root)
  assert row["evaluations_per_sample"] == 4 and row["sampling_evaluations"] == 4 * 200  # euler


def test_discriminator_flow_climbs_d():
  # A known D: the log-odds peak at (1, 1); every step of small size must raise them.
  logit = lambda x: -jnp.sum((x - 1.0) ** 2, axis=-1)
  noise = jax.random.normal(jax.random.key(0), (256, 2))
  moved = denoising.ascend(logit, noise, denoising.Sampling("ascent", 20, step_size=0.05))
  assert bool(jnp.all(logit(moved) > logit(noise)))
  # A trained D: its flow carries noise to points it scores higher, toward the data.
  # grid25 (modes out to radius 5.7): ring8's modes lie where unit noise is typical, and a
  # tiny D does not learn to tell them apart in 300 steps.
  config = tiny_config(
    lambda: dflow.get_config("data=grid25"),
    **{"train.num_steps": 300, "optimizer.learning_rate": 3e-3, "train.lr_decay": "none"},
  )
  den, root, data = denoise.build(config)
  state, metrics = loop.run_chunk(den, den.init_state(root), root, data, 300)
  assert float(metrics["d_data"][-20:].mean()) > float(metrics["d_noise"][-20:].mean()) + 0.3
  apply = functools.partial(den.network.apply, state.params)
  moved = denoising.ascend(apply, noise, denoising.Sampling("ascent", 100, step_size=0.01))
  before, after = jax.nn.sigmoid(apply(noise)), jax.nn.sigmoid(apply(moved))
  assert float((after > before).mean()) > 0.95 and float(after.mean()) > float(before.mean()) + 0.05
  nearest = lambda x: jnp.abs(x - jnp.clip(jnp.round(x / 2) * 2, -4, 4)).sum(-1).mean()
  assert float(nearest(moved)) < float(nearest(noise))  # closer to the grid's modes


# --- the trainer on the run loop ---------------------------------------------------------------


@pytest.mark.parametrize("objective", ["flow_matching", "noise_prediction"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, objective):
  # A cosine decay spans train.num_steps, so the half run that a resume continues has none.
  method = "heun" if objective == "flow_matching" else "ancestral"
  settings = {"objective.name": objective, "sampling.method": method, "train.lr_decay": "none"}
  config = tiny_config(**settings)
  denoise.train_and_evaluate(config, str(tmp_path / "straight"))
  denoise.train_and_evaluate(
    tiny_config(**settings, **{"train.num_steps": 40}), str(tmp_path / "resumed")
  )
  config.train.steps_per_dispatch = 7
  final = denoise.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert _digests(tmp_path / "straight") == _digests(tmp_path / "resumed")
  assert sorted(_digests(tmp_path / "resumed")) == [20, 40, 60]
  assert final["modes"] >= 0 and final["evaluations_per_sample"] > 0
  assert sorted(os.listdir(tmp_path / "straight" / "samples")) == [
    "step_00000040.png",
    "step_00000060.png",
  ]


def test_the_steps_see_exactly_the_samplers_index_stream():
  config = tiny_config(**{"sampler.kind": "streak", "seed": 3})
  den, root, data = denoise.build(config)
  _, metrics = loop.run_chunk(den, den.init_state(root), root, data, 30)
  expected = [trace.array_digest(row) for _, row in samplers.index_stream(config, 0, 30)]
  assert np.asarray(metrics["trace"])[:, 0].tolist() == [int(d) for d in expected]


def test_a_population_member_sees_the_data_order_of_its_standalone_run():
  population = tiny_config(**{"population.size": 3, "seed": 5})
  den, roots, data = denoise.build(population)
  for member in range(3):
    alone, root, alone_data = denoise.build(tiny_config(**{"seed": 5 + member}))
    member_data = jax.tree.map(lambda x, m=member: x[m], data)
    for step in (0, 7, 31):
      seen, batch = denoise.draw_real(den, roots[member], member_data, jnp.int32(step))
      seen_alone, batch_alone = denoise.draw_real(alone, root, alone_data, jnp.int32(step))
      assert np.array_equal(seen, seen_alone) and np.array_equal(batch, batch_alone)
  state, metrics = loop.run_chunk(den, den.init_state(roots), roots, data, 10)
  assert np.asarray(metrics["loss"]).shape == (10, 3)
  alone, root, alone_data = denoise.build(tiny_config(**{"seed": 6}))
  alone_state, _ = loop.run_chunk(alone, alone.init_state(root), root, alone_data, 10)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(alone_state.params), strict=True):
    np.testing.assert_allclose(a[1], b, rtol=1e-4, atol=1e-5)  # vmap rounds differently


@pytest.fixture(scope="module")
def case_run(tmp_path_factory):
  """A finished tiny run (60 steps, the default cosine decay) whose detector fires once, by
  construction; tests work on copies of it."""
  work_dir = tmp_path_factory.mktemp("case_run")
  denoise.train_and_evaluate(case_config(), str(work_dir))
  return work_dir


def case_config(**overrides):
  return tiny_config(
    **{
      "collapse.arm_fraction": 0.0,
      "collapse.diversity_drop": 1e9,
      "collapse.max_cases": 1,
      "collapse.after_steps": 20,
      "train.eval_every": 20,
      **overrides,
    }
  )


def test_a_recorded_case_replays_bit_for_bit(case_run, tmp_path):
  work_dir = shutil.copytree(case_run, tmp_path / "run")
  (case,) = recorder.list_cases(str(work_dir))
  assert case["status"] == "complete" and case["traced_parts"] == ["params"]
  assert replay.verify(case) == case["end_step"] - case["start_step"]
  tampered = recorder.read_trace(case).copy()
  tampered[5, 2] ^= 1
  tampered.tofile(os.path.join(case["dir"], "trace.u32"))
  with pytest.raises(replay.ReplayMismatch, match=rf"step {case['start_step'] + 6}: params"):
    replay.verify(case)


def test_a_decayed_run_refuses_to_resume_with_another_length(case_run, tmp_path):
  work_dir = shutil.copytree(case_run, tmp_path / "run")
  with pytest.raises(workdir.WorkdirMismatchError, match="lr_decay=cosine"):
    denoise.train_and_evaluate(case_config(**{"train.num_steps": 80}), str(work_dir))


def test_bad_settings_name_the_fix():
  with pytest.raises(ValueError, match="valid choices: euler, heun"):
    denoise.Denoiser.from_config(tiny_config(**{"sampling.method": "ancestral"}))
  with pytest.raises(ValueError, match=r"objective\.name"):
    denoise.Denoiser.from_config(tiny_config(**{"objective.name": "gan"}))
  assert rng.Stream.SAMPLING_NOISE == 13  # appended, never renumbered
