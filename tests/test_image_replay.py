"""Collapse cases of image runs (stacked digits, set D): recording, bit-for-bit replay with
image-grid frames, tampering, and a counterfactual with another set discriminator."""

import json
import os
import shutil

import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
import replay_helpers
from conftest import pictures_rendered

from configs import stacked_digits_setd
from jgen.collapse import recorder
from jgen.replays import counterfactual, replay
from jgen.trainers import gan as gan_trainer


def forced_image_case_config(**overrides):
  """configs/stacked_digits_setd.py:runlocal shrunk to 8 steps of 16 images, evaluated every
  4 steps on 200 samples (modes and KL only), whose diversity detector fires at step 8, once:
  the case runs from the checkpoint at step 4 to step 8.

  As in tests/test_cases_replay.py, the trigger is constructed (a threshold no run stays
  under) so the test is about recording and replay, not the detectors' judgement.
  """
  config = stacked_digits_setd.get_config("runlocal")
  config.update_from_flattened_dict(
    {
      "data.num_train": 256,
      "train.batch_size": 16,
      "train.num_steps": 8,
      "train.steps_per_dispatch": 4,
      "train.log_every": 4,
      "train.eval_every": 4,
      "train.checkpoint_every": 4,
      "eval.num_samples": 200,
      "eval.feature_metrics": False,
      "collapse.arm_fraction": 0.0,
      "collapse.diversity_drop": 1e9,
      "collapse.max_cases": 1,
      "collapse.after_steps": 0,
      **overrides,
    }
  )
  return config


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
  """The recorded image case; its pictures rendered (a test compares the replay's frames with
  them)."""
  work_dir = tmp_path_factory.mktemp("image_run")
  with pictures_rendered():
    gan_trainer.train_and_evaluate(forced_image_case_config(), str(work_dir))
  found = recorder.list_cases(str(work_dir))
  assert len(found) == 1, found
  return work_dir, found[0]


def _eval_rows(work_dir) -> dict[int, dict]:
  rows = [json.loads(line) for line in open(os.path.join(work_dir, "metrics.jsonl"))]
  return {row["step"]: row for row in rows}


def test_an_image_run_records_a_case_with_its_digit_metrics_and_grids(recorded):
  _, case = recorded
  assert case["status"] == "complete"
  assert (case["start_step"], case["trigger_step"], case["end_step"]) == (4, 8, 8)
  assert case["detectors"][0]["detector"] == "diversity_drop"
  assert case["traced_steps"] == 4
  assert recorder.read_trace(case)[:, 0].tolist() == list(range(5, 9))
  trigger = case["trigger_row"]
  assert 0 <= trigger["modes"] <= 1000 and len(trigger["mode_counts"]) == 1000
  assert {"case.json", "trace.u32", "parts.jsonl", "checkpoints", "trigger.png"} <= set(
    os.listdir(case["dir"])
  )
  # The listing shows the image rows' KL, not an absent reverse_kl.
  summary = recorder.summary(case)
  assert summary["after"]["step"] == 8 and summary["after"]["reverse_kl"] is not None


def test_replay_verifies_an_image_case_and_dumps_grid_frames(recorded, tmp_path):
  # In process: the command's own lines (`jgen.replay --dump`) are tests/test_cases_replay.py's.
  work_dir, case = recorded
  out = tmp_path / "dump"
  with pictures_rendered():
    assert replay.verify(case, dump_dir=str(out)) == 4  # steps 4 -> 8
  dumped = [json.loads(line) for line in open(out / "metrics.jsonl")]
  assert [row["step"] for row in dumped] == list(range(5, 9))
  # The replayed losses are the run's: its row at step 8 is the mean over steps 5..8.
  logged = _eval_rows(work_dir)[8]
  assert sum(r["d_loss"] for r in dumped) / 4 == pytest.approx(logged["d_loss"], rel=1e-6)
  # One frame per step, drawn as the run's own sample pictures are (a grid, not a scatter).
  frames = sorted(os.listdir(out / "frames"))
  assert frames == [f"step_{s:08d}.png" for s in range(5, 9)]
  run_picture = matplotlib.image.imread(os.path.join(work_dir, "samples", "step_00000008.png"))
  assert matplotlib.image.imread(out / "frames" / frames[-1]).shape == run_picture.shape


def test_a_tampered_image_trace_fails_at_the_tampered_step_and_part(recorded, tmp_path):
  _, case = recorded
  shutil.copytree(case["dir"], tmp_path / "case")
  case = recorder.load_case(str(tmp_path / "case"))
  table = recorder.read_trace(case)
  table[1, 3] ^= 1  # step 6, d_params
  table.tofile(os.path.join(case["dir"], "trace.u32"))
  with pytest.raises(replay.ReplayMismatch, match=r"mismatch at step 6: d_params"):
    replay.verify(case)


def test_an_image_counterfactual_with_a_pack_discriminator(recorded, tmp_path, monkeypatch):
  work_dir, case = recorded
  out = tmp_path / "cf"
  starts = replay_helpers.start_states(monkeypatch)
  override = ["config.model.discriminator.name=conv_pack"]
  report = counterfactual.counterfactual(case, override, str(out))
  assert report["recorded"]["first_divergence_from_recording"] is None
  assert report["counterfactual"]["first_divergence_from_recording"] == case["start_step"] + 1
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
  assert replay_helpers.same_arrays(starts[0].d_params, saved.d_params)
  assert not replay_helpers.same_arrays(starts[1].d_params, saved.d_params)
  # The recorded branch re-evaluates exactly what the run logged, and judges it as the run did.
  logged = _eval_rows(work_dir)
  for row in report["recorded"]["evaluations"]:
    for key in ("modes", "kl", "diversity"):
      assert row[key] == logged[row["step"]][key], (row["step"], key)
  assert [d["step"] for d in report["recorded"]["detectors"]] == [8]
  steps = [
    [r["step"] for r in report[name]["evaluations"]] for name in ("recorded", "counterfactual")
  ]
  assert steps == [[8], [8]]
  for name in ("counterfactual.json", "branches.png", "samples.png"):
    assert (out / name).exists()
  for name in ("recorded", "counterfactual"):
    assert (out / f"{name}_final.png").exists()
  printed = counterfactual.counterfactual_text(report, str(out))
  assert "recorded modes/rKL/diversity" in printed and "samples.png" in printed


def test_curve_keys_follow_the_data():
  mixture_row = {"modes": 8, "reverse_kl": None, "diversity": 1.0, "high_quality": 0.9}
  # Image rows carry the same `reverse_kl` as 2D rows (beside their documented `kl`).
  digits_row = {"modes": 50, "kl": 3.5, "reverse_kl": 3.5, "diversity": 0.8}
  assert counterfactual.curve_keys([mixture_row]) == ["modes", "reverse_kl", "diversity"]
  assert counterfactual.curve_keys([digits_row]) == ["modes", "reverse_kl", "diversity"]
  assert counterfactual.curve_keys([{**digits_row, "classifier_fid": 1.0}])[-1] == "classifier_fid"
  assert counterfactual.curve_keys([{"diversity": 0.8}]) == ["diversity"]


def test_replay_feeds_data_read_on_the_host_from_the_case_start():
  """Large TFDS data is read on the host (Grain), one batch per step: the window's first
  batch must be the one the run read after the start checkpoint, as a resume reads it."""
  tfds = pytest.importorskip("tensorflow_datasets")
  config = forced_image_case_config(
    **{"data.name": "cifar10", "data.num_train": 48, "data.device_bytes_limit": 0}
  )
  with tfds.testing.mock_data(num_examples=48):
    gan, root, data = gan_trainer.build(config)
    assert gan.data.on_host
    batches = gan.step_data(config, root, data, 4, 8)  # what replay reads
    for step in (4, 5):  # the steps whose updates make trace rows 5 and 6
      indices = np.asarray(gan.sample_indices(root, jnp.int32(step)))
      expected = np.stack([gan.data.source.read(i) for i in indices])
      np.testing.assert_array_equal(np.asarray(batches.next_batch()), expected)
