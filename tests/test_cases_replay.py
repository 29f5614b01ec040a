"""Collapse cases: detectors, recording, bit-for-bit replay, tampering, counterfactuals."""

import json
import os

import forked_commands
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import replay_helpers
from conftest import tiny_config

from configs import gan
from jgen.collapse import detectors as collapse
from jgen.collapse import recorder
from jgen.core import rng
from jgen.data import mixtures
from jgen.evals import diversity, modes
from jgen.replays import counterfactual, replay
from jgen.run import checkpoints, loop
from jgen.trainers import gan as gan_trainer
from jgen.trainers import gan_step


def forced_case_config(**overrides):
  """A tiny run whose diversity detector fires at the second evaluation (step 40), once.

  The trigger is constructed (a threshold no run can stay under) so the test is about
  recording and replay; the detectors' judgement is tested on rows below.
  """
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


def _only_case(work_dir) -> dict:
  found = recorder.list_cases(str(work_dir))
  assert len(found) == 1, found
  return found[0]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
  work_dir = tmp_path_factory.mktemp("run")
  gan_trainer.train_and_evaluate(forced_case_config(), str(work_dir))
  return work_dir, _only_case(work_dir)


# --- detectors -----------------------------------------------------------------------------


def _rows_from(samples_list):
  mixture = mixtures.get_mixture("ring8")
  rows = []
  for step, samples in enumerate(samples_list, start=1):
    row = modes.to_json_row(jax.device_get(modes.mode_metrics(samples, mixture)))
    row.update(step=step * 100, diversity=float(diversity.mean_pairwise_distance(samples)))
    rows.append(row)
  return rows


def test_detectors_are_silent_on_healthy_samples_and_fire_on_a_constructed_collapse():
  mixture = mixtures.get_mixture("ring8")
  healthy = [mixture.sample(jax.random.key(i), 2500) for i in range(6)]
  detector = collapse.Detector(gan.get_config().collapse)
  assert [detector.observe(row) for row in _rows_from(healthy)] == [[]] * 6
  # Collapse: the same generator keeps only modes 0..k-1 as k shrinks from 8 to 2.
  points = np.asarray(mixture.sample(jax.random.key(0), 20000))
  nearest = np.asarray(modes.nearest_mode(jnp.asarray(points), mixture)[0])
  shrinking = [jnp.asarray(points[nearest < k][:2500]) for k in (8, 8, 7, 5, 3, 2)]
  detector = collapse.Detector(gan.get_config().collapse)
  fired = [[f["detector"] for f in detector.observe(row)] for row in _rows_from(shrinking)]
  assert fired[:3] == [[], [], []]  # 8 -> 8 -> 7: one mode lost is under mode_drop=2
  assert "mode_drop" in fired[3]  # 8 -> 5
  assert "mode_drop" in fired[4]  # 5 -> 3: a new drop after the reset
  assert detector.count == sum(bool(f) for f in fired)


def test_detectors_wait_until_armed():
  config = gan.get_config().collapse
  detector = collapse.Detector(config)
  chaotic = {"modes": 1, "mode_counts": [5] + [0] * 7, "reverse_kl": 2.0, "diversity": 1.0}
  assert detector.observe({**chaotic, "step": 1}) == [] and not detector.armed
  assert detector.observe({**chaotic, "modes": 0, "step": 2}) == []
  learned = {"modes": 8, "mode_counts": [5] * 8, "reverse_kl": 0.0, "diversity": 1.0}
  assert detector.observe({**learned, "step": 3}) == [] and detector.armed
  assert detector.observe({**chaotic, "step": 4})  # now losing 7 modes is a collapse


# --- recording and replay ------------------------------------------------------------------


def test_a_case_bundle_holds_what_replay_needs(recorded):
  _, case = recorded
  assert case["status"] == "complete"
  assert (case["start_step"], case["trigger_step"], case["end_step"]) == (20, 40, 60)
  assert case["detectors"][0]["detector"] == "diversity_drop"
  assert case["environment"]["versions"]["jax"] == jax.__version__
  assert case["config"]["seed"] == 0 and case["traced_steps"] == 40
  names = set(os.listdir(case["dir"]))
  assert {
    "case.json",
    "trace.u32",
    "parts.jsonl",
    "checkpoints",
    "trigger.png",
    "after.png",
  } <= names
  assert recorder.read_trace(case)[:, 0].tolist() == list(range(21, 61))


def test_replay_verifies_every_recorded_digest(recorded):
  _, case = recorded
  assert replay.verify(case) == 40


def test_tracing_does_not_change_training(tmp_path, recorded):
  work_dir, _ = recorded
  gan_trainer.train_and_evaluate(forced_case_config(**{"collapse.trace": False}), str(tmp_path))
  digests = [
    [json.loads(line)["state_digest"] for line in open(os.path.join(d, "metrics.jsonl"))]
    for d in (work_dir, tmp_path)
  ]
  assert digests[0] == digests[1]


def _copy_case(case, tmp_path):
  import shutil

  destination = tmp_path / "case"
  shutil.copytree(case["dir"], destination)
  return recorder.load_case(str(destination))


def test_a_tampered_trace_fails_at_the_tampered_step_and_part(recorded, tmp_path):
  _, case = recorded
  case = _copy_case(case, tmp_path)
  table = recorder.read_trace(case)
  table[16, 2] ^= 1  # step 37, g_params
  table.tofile(os.path.join(case["dir"], "trace.u32"))
  with pytest.raises(replay.ReplayMismatch, match=r"mismatch at step 37: g_params"):
    replay.verify(case)


def test_a_tampered_optimizer_digest_fails_at_its_logged_step(recorded, tmp_path):
  _, case = recorded
  case = _copy_case(case, tmp_path)
  path = os.path.join(case["dir"], "parts.jsonl")
  rows = [json.loads(line) for line in open(path)]
  for row in rows:
    if row["step"] == 40:
      row["parts"]["d_opt_state"] = "0" * 64
  with open(path, "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)
  with pytest.raises(replay.ReplayMismatch, match=r"mismatch at step 40: .* in d_opt_state"):
    replay.verify(case)


def test_a_tampered_checkpoint_fails_before_the_first_step(recorded, tmp_path):
  _, case = recorded
  case = _copy_case(case, tmp_path)
  config = recorder.case_config(case)
  model = gan_trainer.Gan.from_config(config)
  manager = checkpoints.Checkpoints(case["dir"], keep=1000)
  state = manager.restore(20, like=gan_trainer.init_state(model, rng.root_key(0)))
  leaves, treedef = jax.tree.flatten(state.d_params)
  leaves[0] = leaves[0].at[0].add(1e-3)
  state = state.replace(d_params=jax.tree.unflatten(treedef, leaves))
  import shutil

  shutil.rmtree(manager.step_dir(20))
  manager.close()
  rewriter = checkpoints.Checkpoints(case["dir"], keep=1000)
  rewriter.save(20, state)
  rewriter.close()
  with pytest.raises(replay.ReplayMismatch, match=r"step 20: the start checkpoint .*d_params"):
    replay.verify(case)


def test_a_counterfactual_diverges_after_the_start_and_not_before(recorded, tmp_path):
  _, case = recorded
  report = counterfactual.counterfactual(
    case, ["config.sampler.kind=with_replacement"], str(tmp_path / "cf")
  )
  assert report["recorded"]["first_divergence_from_recording"] is None
  assert report["counterfactual"]["first_divergence_from_recording"] == case["start_step"] + 1
  # The recorded branch reproduces the run's own judgement at its trigger step.
  assert [d["step"] for d in report["recorded"]["detectors"]] == [40]
  assert [r["step"] for r in report["counterfactual"]["evaluations"]] == [40, 60]
  for name in ("counterfactual.json", "branches.png", "recorded_final.png"):
    assert (tmp_path / "cf" / name).exists()


def test_a_counterfactual_with_another_discriminator_keeps_the_generator(
  recorded, tmp_path, monkeypatch
):
  _, case = recorded
  starts = replay_helpers.start_states(monkeypatch)
  report = counterfactual.counterfactual(
    case,
    ["config.model.discriminator.name=deepsets", "config.model.set_size=4"],
    str(tmp_path / "cf"),
  )
  assert report["counterfactual"]["restored"] == [
    "d_params and d_opt_state: freshly initialized (the override changes their shapes)"
  ]
  # The note is borne out by the arrays: both branches start from the checkpoint's generator
  # and its optimizer state; only the counterfactual's discriminator is new.
  saved = replay_helpers.checkpointed_state(case)
  assert len(starts) == 2  # the recorded branch, then the counterfactual
  for start in starts:
    assert replay_helpers.same_arrays(start.g_params, saved.g_params)
    assert replay_helpers.same_arrays(start.g_opt_state, saved.g_opt_state)
  recorded_start, counterfactual_start = starts
  assert replay_helpers.same_arrays(recorded_start.d_params, saved.d_params)
  assert not replay_helpers.same_arrays(counterfactual_start.d_params, saved.d_params)


def test_a_case_from_an_interrupted_and_resumed_run_replays_identically(
  recorded, tmp_path, monkeypatch
):
  _, uninterrupted = recorded
  real_complete = recorder.CaseRecorder._complete

  def crash(self, case, step):
    raise KeyboardInterrupt("simulated crash while the case is open")

  monkeypatch.setattr(recorder.CaseRecorder, "_complete", crash)
  with pytest.raises(KeyboardInterrupt):
    gan_trainer.train_and_evaluate(forced_case_config(), str(tmp_path))
  assert _only_case(tmp_path)["status"] == "recording"
  monkeypatch.setattr(recorder.CaseRecorder, "_complete", real_complete)
  gan_trainer.train_and_evaluate(forced_case_config(), str(tmp_path))
  case = _only_case(tmp_path)
  assert case["status"] == "complete"
  assert np.array_equal(recorder.read_trace(case), recorder.read_trace(uninterrupted))
  assert replay.verify(case) == 40


def test_a_non_finite_loss_records_a_case_up_to_the_bad_step(tmp_path, monkeypatch):
  real_step = gan_step.train_step

  def poisoned_step(gan, state, root, data):
    new_state, metrics = real_step(gan, state, root, data)
    poison = jnp.where(state.step + 1 >= 27, jnp.nan, 1.0)
    return new_state, {**metrics, "d_loss": metrics["d_loss"] * poison}

  monkeypatch.setattr(gan_step, "train_step", poisoned_step)
  with pytest.raises(loop.NonFiniteError, match="recorded in"):
    gan_trainer.train_and_evaluate(tiny_config(), str(tmp_path))
  case = _only_case(tmp_path)
  assert case["detectors"][0]["detector"] == "non_finite"
  assert (case["start_step"], case["end_step"], case["traced_steps"]) == (20, 27, 7)
  assert replay.verify(case) == 7


# --- command lines -------------------------------------------------------------------------


# Each test's commands run as `python -m ...` would, each in a process of its own, forked from one
# interpreter (tests/forked_commands.py).


# The trainer jgen.replay imports once it has read the case: imported once, before the forks
# (tests/forked_commands.py); what these tests read is the commands' own output.
REPLAYED_TRAINER = ("jgen.trainers.gan",)


def test_cases_and_replay_command_lines(recorded, tmp_path):
  work_dir, case = recorded
  listing, result = forked_commands.run(
    [
      ["jgen.cases", f"--workdir={work_dir}"],
      ["jgen.replay", f"--case={case['dir']}", "--dump", f"--out={tmp_path / 'dump'}"],
    ],
    preload=REPLAYED_TRAINER,
  )
  assert listing.returncode == 0, listing.stderr
  assert case["id"] in listing.stdout and "diversity_drop" in listing.stdout
  assert result.returncode == 0, result.stderr[-2000:]
  assert "verified 40 steps" in result.stdout
  dumped = [json.loads(line) for line in open(tmp_path / "dump" / "metrics.jsonl")]
  assert [row["step"] for row in dumped] == list(range(21, 61))
  assert os.listdir(tmp_path / "dump" / "frames")


def test_replay_refuses_a_case_from_another_environment(recorded, tmp_path):
  _, case = recorded
  case = _copy_case(case, tmp_path)
  path = os.path.join(case["dir"], "case.json")
  data = json.load(open(path))
  data["environment"]["versions"]["jax"] = "0.0.1"
  json.dump(data, open(path, "w"))
  refused, allowed = forked_commands.run(
    [
      ["jgen.replay", f"--case={case['dir']}"],
      ["jgen.replay", f"--case={case['dir']}", "--allow_mismatch"],
    ],
    preload=REPLAYED_TRAINER,
  )
  assert refused.returncode == 2
  assert "jax: recorded 0.0.1" in refused.stderr and "--allow_mismatch" in refused.stderr
  assert allowed.returncode == 0 and "verified 40 steps" in allowed.stdout


def test_case_aliases_name_the_first_and_latest_case_and_a_wrong_path_lists_the_cases(tmp_path):
  cases = tmp_path / "run" / "cases"
  for name in ("00000900-mode_drop", "00000400-kl_rise", "00001200-diversity"):
    (cases / name).mkdir(parents=True)
  assert replay.resolve_case(str(cases / "first")) == str(cases / "00000400-kl_rise")
  assert replay.resolve_case(str(cases / "latest")) == str(cases / "00001200-diversity")
  assert replay.resolve_case(str(cases / "00000900-mode_drop")) == str(cases / "00000900-mode_drop")
  with pytest.raises(ValueError) as error:
    replay.resolve_case(str(cases / "00000500-mode_drop"))
  message = str(error.value)
  assert (
    "\n" not in message and "00000400-kl_rise, 00000900-mode_drop, 00001200-diversity" in message
  )
  assert f"python -m jgen.cases --workdir={tmp_path / 'run'}" in message
  with pytest.raises(ValueError, match="holds none"):
    replay.resolve_case(str(tmp_path / "elsewhere" / "cases" / "first"))
