"""The recovery study (jgen/studies/recovery.py): McNemar's exact test on hand-worked tables, the
regain definition, the report's statistics, and the whole pipeline at toy size: cases recorded,
replayed to their trigger, branched under every intervention, resumed without recomputing."""

import json
import math
import os
import shutil

import pytest

from configs import study_recovery
from jgen.collapse import recorder
from jgen.core import jsonl
from jgen.replays import counterfactual, replay
from jgen.studies import recovery, runner, stats
from jgen.trainers import gan as gan_trainer

# --- McNemar's exact test -------------------------------------------------------------------


def _sign_test_by_enumeration(b: int, c: int) -> float:
  """The two-sided exact p from its definition: the probability, under Binomial(b + c, 1/2), of
  every split of the discordant pairs no more probable than the observed one."""
  n = b + c
  observed = math.comb(n, b)
  return min(1.0, sum(math.comb(n, k) for k in range(n + 1) if math.comb(n, k) <= observed) / 2**n)


def test_mcnemar_exact_on_hand_worked_tables():
  assert stats.mcnemar_exact(0, 0) == 1.0  # no discordant pair: no evidence either way
  assert stats.mcnemar_exact(1, 0) == 1.0  # 2 x P(X <= 0 | n=1) = 2 x 1/2
  assert stats.mcnemar_exact(3, 3) == 1.0  # a balanced table
  assert stats.mcnemar_exact(0, 6) == 2 / 64  # 2 x (1/2)^6
  assert stats.mcnemar_exact(2, 8) == 2 * (1 + 10 + 45) / 1024  # 0.109375
  assert stats.mcnemar_exact(8, 2) == stats.mcnemar_exact(2, 8)  # two-sided: symmetric
  assert stats.mcnemar_exact(1, 9) == 2 * (1 + 10) / 1024
  for b, c in [(0, 0), (1, 4), (5, 12), (20, 9), (0, 30)]:
    assert stats.mcnemar_exact(b, c) == pytest.approx(_sign_test_by_enumeration(b, c), rel=1e-12)
  with pytest.raises(ValueError, match="only_first"):
    stats.mcnemar_exact(-1, 3)


def test_mcnemar_can_fail_a_real_difference():
  # 12 of 24 cases recover only under the intervention, none only without it: p = 2^-11.
  assert stats.mcnemar_exact(0, 12) == 2 / 4096
  assert stats.mcnemar_exact(0, 12) < 0.001
  assert stats.mcnemar_exact(1, 10) < 0.05
  # Concordant pairs carry no information: the same discordant split gives the same p.
  assert stats.mcnemar_exact(2, 3) > 0.5


# --- the regain definition and the report's statistics ---------------------------------------


def _counts(*present, modes=8):
  return [5 if k in present else 0 for k in range(modes)]


def test_lost_modes_are_those_missing_at_the_trigger_that_the_run_had_captured():
  rows = [
    {"step": 500, "mode_counts": _counts(0, 1, 2)},
    {"step": 600, "d_loss": 1.0},  # a log row without an evaluation
    {"step": 1000, "mode_counts": _counts(0, 1, 2, 3, 4)},
    {"step": 1500, "mode_counts": _counts(0, 4)},  # the trigger
    {"step": 2000, "mode_counts": _counts(1, 2, 3, 5)},  # after it: ignored
  ]
  # Modes 5, 6 and 7 were never captured before the trigger, so they were not lost.
  assert recovery.lost_modes(rows, 1500) == [1, 2, 3]


def test_regained_needs_every_lost_mode_at_one_evaluation():
  lost = [2, 5]
  apart = [[250, 6, _counts(0, 2)], [500, 6, _counts(0, 5)]]  # each once, never together
  assert recovery.regained(lost, apart) == (False, False, None)
  transient = [[250, 6, _counts(2)], [500, 7, _counts(2, 5)], [750, 6, _counts(5)]]
  assert recovery.regained(lost, transient) == (True, False, 500)
  kept = [*transient, [1000, 8, _counts(0, 2, 5)]]
  assert recovery.regained(lost, kept) == (True, True, 500)


def _outcome(regain_none: bool, regain_fresh: bool) -> dict:
  lost = [3, 4]

  def evaluations(regain):
    last = [500, 8, _counts(0, 1, 3, 4)] if regain else [500, 6, _counts(0, 1)]
    return [[250, 6, _counts(0, 1)], last]

  return {
    "case": {"modes": 6, "lost_modes": lost, "replayed_steps": 500, "trigger_reproduced": True},
    "branches": {
      "none": {"notes": ["kept"], "evaluations": evaluations(regain_none)},
      "fresh_d": {"notes": ["reset"], "evaluations": evaluations(regain_fresh)},
    },
    "cpu_seconds": 1.0,
  }


def test_report_statistics_on_synthetic_outcomes_with_known_answers():
  config = study_recovery.get_config()
  config.study.interventions = "fresh_d,none"  # `none` is always the first, the reference
  # 10 cases: both regain in 2, only fresh_d in 7, only none in 0, neither in 1.
  outcomes = [_outcome(True, True)] * 2 + [_outcome(False, True)] * 7 + [_outcome(False, False)]
  records = [{"seed": 0, "case": {"trigger_step": 1000, "lost_modes": [3, 4]}, "cpu_seconds": 2.0}]
  report = recovery.build_report(config, records, outcomes)
  none, fresh = report["interventions"]
  assert none["name"] == "none" and "mcnemar_regained" not in none
  assert none["regained"]["count"] == 2 and fresh["regained"]["count"] == 9
  assert fresh["regained"]["wilson_95"] == pytest.approx(list(stats.wilson_interval(9, 10)))
  assert fresh["mcnemar_regained"] == {
    "only_none": 0,
    "only_intervention": 7,
    "p_value": 2 / 128,
    "holm_p_value": 2 / 128,  # one comparison: Holm changes nothing
  }
  assert fresh["median_steps_to_regain"] == 500
  assert fresh["modes_over_time"] == [[0, 6.0], [250, 6.0], [500, pytest.approx(7.8)]]
  assert report["verification"] == {"replayed_steps": 5000, "triggers_reproduced": 10}
  assert json.loads(json.dumps(report)) == report
  text = recovery.report_markdown(config, report)
  assert "| `fresh_d` | 9/10 = 0.90" in text and "0 / 7 | 0.0156" in text


# --- the pipeline at toy size ------------------------------------------------------------------

TOY = {
  # A tiny GAN that loses a mode within a few hundred steps; a drop of one mode counts here.
  "base.data.num_train": 1000,
  "base.model.generator.width": 32,
  "base.model.generator.depth": 2,
  "base.model.discriminator.width": 32,
  "base.model.discriminator.depth": 2,
  "base.train.batch_size": 32,
  "base.train.num_steps": 240,
  "base.train.steps_per_dispatch": 20,
  "base.train.log_every": 20,
  "base.train.eval_every": 20,
  "base.train.checkpoint_every": 20,
  "base.eval.num_samples": 500,
  "base.collapse.mode_drop": 1,
  "base.collapse.arm_fraction": 0.25,
  "study.num_cases": 2,
  "study.max_seeds": 4,
  "study.window": 40,
  "study.eval_every": 20,
}


def toy_config(**overrides):
  config = study_recovery.get_config()
  config.update_from_flattened_dict({**TOY, **overrides})
  return config


@pytest.fixture(scope="module")
def toy_study(tmp_path_factory):
  work_dir = str(tmp_path_factory.mktemp("recovery"))
  report = recovery.run_study(toy_config(), work_dir)
  return work_dir, report


def _outcomes(work_dir: str) -> dict:
  found = {}
  for name in sorted(os.listdir(os.path.join(work_dir, "cells"))):
    with open(os.path.join(work_dir, "cells", name, "outcome.json")) as f:
      found[name] = json.load(f)
  return found


def test_the_toy_study_records_cases_and_branches_each_under_every_intervention(toy_study):
  work_dir, report = toy_study
  with open(os.path.join(work_dir, "report.json")) as f:
    assert json.load(f) == report
  assert os.path.getsize(os.path.join(work_dir, "modes_over_time.png")) > 0
  assert report["cases"] == 2 and len(report["stage1"]["seeds_with_case"]) == 2
  names = [entry["name"] for entry in report["interventions"]]
  assert names == study_recovery.INTERVENTIONS.split(",")
  assert all(entry["regained"]["trials"] == 2 for entry in report["interventions"])
  # Every case was replayed to its trigger bit for bit and gave the recorded evaluation there.
  assert report["verification"]["triggers_reproduced"] == 2
  notes = {entry["name"]: " ".join(entry["notes"]) for entry in report["interventions"]}
  assert "d_params and d_opt_state: freshly initialized (reset)" in notes["fresh_d"]
  assert "changes their shapes" in notes["set_d"]
  assert "g_opt_state" in notes["reset_optimizers"] and "kept" in notes["lr_cut"]
  for name, outcome in _outcomes(work_dir).items():
    if name.startswith("record-") and outcome["case"]:
      case = recorder.load_case(os.path.join(work_dir, outcome["case"]["dir"]))
      assert [d["detector"] for d in case["detectors"]] == ["mode_drop"]
      assert outcome["case"]["lost_modes"]  # a drop loses at least one captured mode
    if name.startswith("case-"):
      steps = [e[0] for e in outcome["branches"]["none"]["evaluations"]]
      assert steps == [20, 40]  # steps after the trigger


def test_none_is_the_recorded_run_continued(toy_study, tmp_path):
  work_dir, _ = toy_study
  outcome = next(o for n, o in _outcomes(work_dir).items() if n.startswith("case-"))
  case = recorder.load_case(os.path.join(work_dir, outcome["case"]["dir"]))
  config = recorder.case_config(case)
  trigger = case["trigger_step"]
  with config.unlocked():
    config.collapse.on_trigger = "continue"  # the same run, not stopped at its drop
    config.train.num_steps = trigger + 40
  gan_trainer.train_and_evaluate(config, str(tmp_path))
  rows = jsonl.read_rows(os.path.join(tmp_path, "metrics.jsonl"))
  continued = [
    [row["step"] - trigger, row["modes"], row["mode_counts"]]
    for row in rows
    if row["step"] > trigger and "modes" in row
  ]
  assert outcome["branches"]["none"]["evaluations"] == continued


def _forbid(monkeypatch, *targets):
  def refuse(*args, **kwargs):
    raise AssertionError("a finished cell or branch was recomputed")

  for module, name in targets:
    monkeypatch.setattr(module, name, refuse)


def test_a_finished_study_is_not_recomputed(toy_study, tmp_path, monkeypatch):
  work_dir, report = toy_study
  copy = str(tmp_path / "study")
  shutil.copytree(work_dir, copy)
  _forbid(monkeypatch, (runner, "train"), (replay, "run_window"), (counterfactual, "run_branch"))
  assert recovery.run_study(toy_config(), copy) == report


def test_an_interrupted_case_resumes_by_intervention(toy_study, tmp_path, monkeypatch):
  work_dir, report = toy_study
  copy = str(tmp_path / "study")
  shutil.copytree(work_dir, copy)
  name = next(n for n in _outcomes(copy) if n.startswith("case-"))
  cell = os.path.join(copy, "cells", name)
  before = _outcomes(copy)[name]
  # As if stopped after its fourth branch: no outcome, and the last three branches missing.
  os.remove(os.path.join(cell, "outcome.json"))
  for branch in study_recovery.INTERVENTIONS.split(",")[4:]:
    os.remove(os.path.join(cell, "branches", f"{branch}.json"))
  ran, run_branch = [], counterfactual.run_branch

  def counting(trainer, *args, **kwargs):
    ran.append(trainer)
    return run_branch(trainer, *args, **kwargs)

  monkeypatch.setattr(counterfactual, "run_branch", counting)
  _forbid(monkeypatch, (runner, "train"))
  resumed = recovery.run_study(toy_config(), copy)
  assert len(ran) == 3  # only the missing branches ran
  # The branches run again give the same evaluations: a branch is a function of the case.
  assert _without_times(_outcomes(copy)[name]) == _without_times(before)
  assert resumed["interventions"] == report["interventions"]


def _without_times(value):
  if isinstance(value, dict):
    return {k: _without_times(v) for k, v in value.items() if k != "cpu_seconds"}
  return value


def test_a_changed_study_config_is_refused(toy_study, tmp_path):
  work_dir, _ = toy_study
  copy = str(tmp_path / "study")
  shutil.copytree(work_dir, copy)
  with pytest.raises(ValueError, match=r"study\.window"):
    recovery.run_study(toy_config(**{"study.window": 60}), copy)
