"""One sampling call for every generator family: trainer.sample(state, key, n)
(jgen/run/interface.py), and the named evaluators that score any family through it."""

import numpy as np
import pytest

from configs import dflow, dgn, dip, flow, gan
from jgen.core import jsonl, rng
from jgen.trainers import get_trainer


def _small(make, arg="runlocal", **overrides):
  config = make(arg)
  config.update_from_flattened_dict(overrides)
  return config


FAMILIES = {
  "gan": lambda: _small(gan.get_config),
  "flow_matching": lambda: _small(flow.get_config, **{"sampling.num_steps": 2}),
  "noise_prediction": lambda: _small(
    flow.get_config, "runlocal,objective=noise_prediction", **{"sampling.num_steps": 2}
  ),
  "discriminator_flow": lambda: _small(dflow.get_config, **{"sampling.num_steps": 2}),
  "dgn": lambda: _small(dgn.get_config, **{"data.num_train": 20}),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_generator_family_draws_n_samples_through_the_same_call(family):
  config = FAMILIES[family]()
  trainer, root, _ = get_trainer(config.trainer).build(config)
  state = trainer.init_state(root)
  samples = trainer.sample(state, root, 7)
  assert samples.shape[0] == 7 and np.isfinite(samples).all()
  np.testing.assert_array_equal(samples, trainer.sample(state, root, 7))  # the key decides
  assert not np.array_equal(samples, trainer.sample(state, rng.root_key(12345), 7))


def test_evaluation_scores_the_samples_of_the_sampling_call():
  config = FAMILIES["gan"]()
  trainer, root, data = get_trainer("gan").build(config)
  state = trainer.init_state(root)
  shown, _ = trainer.evaluate(state, root, data)
  np.testing.assert_array_equal(shown, trainer.sample(state, root, config.eval.num_samples))


def test_dip_says_it_has_no_sampler():
  config = _small(dip.get_config)
  trainer, root, _ = get_trainer("dip").build(config)
  with pytest.raises(NotImplementedError, match="no prior to draw new samples from"):
    trainer.sample(None, root, 4)


# --- named evaluators -------------------------------------------------------------------------


def _short(make, arg="runlocal", **overrides):
  """A run of 20 steps with a checkpoint at the end, as a 2D-mixture run of its family."""
  steps = {
    "train.num_steps": 20,
    "train.steps_per_dispatch": 10,
    "train.log_every": 10,
    "train.eval_every": 20,
    "train.checkpoint_every": 20,
    "eval.num_samples": 100,
  }
  return _small(make, arg, **steps, **overrides)


def test_a_flow_and_a_gan_checkpoint_are_scored_by_the_same_named_evaluator(tmp_path, monkeypatch):
  from jgen.trainers import denoise, scoring
  from jgen.trainers import gan as gan_trainer

  runs = {
    "gan": _short(gan.get_config),
    "flow": _short(flow.get_config, **{"sampling.num_steps": 2, "eval.sample_batch": 100}),
  }
  for name, config in runs.items():
    get_trainer(config.trainer).train_and_evaluate(config, str(tmp_path / name))
  calls = []
  for cls in (gan_trainer.Gan, denoise.Denoiser):
    real = cls.sample
    spy = lambda self, state, key, n, real=real: (
      calls.append(type(self).__name__) or real(self, state, key, n)
    )
    monkeypatch.setattr(cls, "sample", spy)
  evals = scoring.parse_evals("m=mixture,precision_recall", 300)
  rows = {name: scoring.score_checkpoint(str(tmp_path / name), evals) for name in runs}
  assert calls == ["Gan", "Gan", "Denoiser", "Denoiser"]  # one draw per evaluator and run
  for name, row in rows.items():
    assert row["step"] == 20 and row["verified"], row
    assert {"m/modes", "m/reverse_kl", "precision_recall/recall"} <= set(row), row
    assert 0 <= row["m/modes"] <= 8 and 0.0 <= row["precision_recall/precision"] <= 1.0
    final = [r for r in jsonl.read_rows(tmp_path / name / "metrics.jsonl") if r["step"] == 20]
    assert final[0]["state_digest"] == row["state_digest"]  # the checkpoint the run ended on


def test_config_evals_run_on_their_own_schedule_and_leave_the_default_row_alone(tmp_path):
  evals = {
    "cheap": {"type": "mixture", "every": 10, "num_samples": 200},
    "copies": {"type": "memorization", "every": 20, "num_samples": 50},
  }
  config = _short(gan.get_config)
  plain = get_trainer("gan").train_and_evaluate(config, str(tmp_path / "plain"))
  config = _short(gan.get_config)
  config.unlock()
  config.evals = evals
  config.lock()
  final = get_trainer("gan").train_and_evaluate(config, str(tmp_path / "evals"))
  rows = jsonl.read_rows(tmp_path / "evals" / "metrics.jsonl")
  assert [("cheap/modes" in r, "copies/memorization_rate" in r) for r in rows] == [
    (True, False),
    (True, True),
  ]
  assert {k: v for k, v in final.items() if "/" not in k and k != "steps_per_sec"} == {
    k: v for k, v in plain.items() if k != "steps_per_sec"
  }
  config.unlock()
  config.evals.cheap.every = 15
  with pytest.raises(ValueError, match=r"multiple of train\.log_every=10"):
    get_trainer("gan").build(config)
