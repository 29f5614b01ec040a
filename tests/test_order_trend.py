"""The preregistered sampling-order study at toy size: its blocks, its manipulation check,
that every order trains on the same seeds, its report, and that a finished block is not rerun."""

import json
import os

import pytest

from configs import study_sampling_order_trend
from jgen.run import variants
from jgen.studies import runner, sampling_order_trend

TOY = {
  "study.num_train": "8",
  "study.primary_optimizers": "adam",
  "study.secondary_optimizers": "",
  "study.seeds": 2,
  "study.permutations": 200,
  "study.bootstrap_resamples": 100,
  "study.manipulation_steps": 64,
  "base.train.num_steps": 100,
  "base.train.steps_per_dispatch": 50,
  "base.train.eval_every": 20,
  "base.train.log_every": 20,
  "base.train.checkpoint_every": 50,
  "base.eval.num_samples": 200,
  "base.population.devices": 1,
}


def toy_config(**overrides):
  config = study_sampling_order_trend.get_config("runlocal")
  config.update_from_flattened_dict({**TOY, **overrides})
  return config


def test_the_design_has_nine_blocks_and_every_order_shares_the_seeds():
  config = study_sampling_order_trend.get_config()
  names = [cell["name"] for cell in sampling_order_trend.cells(config)]
  assert len(names) == 9 and names[0] == "per_sample-adam-n8" and names[-1] == "set-adam-n100000"
  cell = sampling_order_trend.cells(config)[0]
  run = sampling_order_trend.cell_config(config, cell)
  assert run.population.size == 5 * 64
  assert run.data.balanced and run.train.batch_size == 4 and run.data.num_train == 8
  parsed = variants.parse(run)
  assert parsed.num_variants == 5 and parsed.seeds_per_variant == 64
  assert parsed.columns["sampler.kind"] == (
    "epoch_shuffle",
    "shuffle_once",
    "with_replacement",
    "streak",
    "streak",
  )
  assert parsed.columns["sampler.streak_length"][3:] == (8, 64)
  seeds = variants.member_seeds(parsed, run.seed, run.population.size)
  assert [seeds[v * 64 + 5] for v in range(5)] == [5] * 5  # seed 5 under every order
  other = sampling_order_trend.cell_config(config, sampling_order_trend.cells(config)[1])
  assert not other.data.balanced and other.train.batch_size == 8 and other.data.num_train == 64


def test_the_study_writes_its_report_and_resumes_without_retraining(tmp_path, monkeypatch):
  config = toy_config()
  work = str(tmp_path / "study")
  report = sampling_order_trend.run_study(config, work)
  (block,) = report["blocks"]
  assert block["orders"] == [
    "epoch_shuffle",
    "shuffle_once",
    "with_replacement",
    "streak8",
    "streak64",
  ]
  assert 0 < block["trend"]["p_value"] <= 1 and block["verdict"]
  assert (
    block["extreme_difference_95"][0]
    <= block["extreme_difference"]
    <= block["extreme_difference_95"][1]
  )
  text = open(os.path.join(work, "report.md")).read()
  assert "Manipulation check" in text and "Verdict" in text
  assert os.path.exists(os.path.join(work, "modes_over_time.png"))
  outcome = json.load(open(os.path.join(work, "cells", block["name"], "outcome.json")))
  assert len(outcome["outcomes"]) == 10  # 5 orders x 2 seeds
  # The manipulation check, from each order's index stream at N = 8, B = 4.
  checks = outcome["manipulation"]
  assert checks["shuffle_once"]["repeat_fraction"] == 0.0  # the same two batches, alternating
  assert checks["streak64"]["repeat_fraction"] == 1.0
  assert checks["epoch_shuffle"]["batch_size"] == 4
  assert checks["with_replacement"]["gaps"]["fraction_0"] > 0  # only it repeats within a batch
  assert all(checks[name]["gaps"]["fraction_0"] == 0 for name in block["orders"][:2])

  def no_training(*args, **kwargs):
    raise AssertionError("a finished block was trained again")

  monkeypatch.setattr(runner, "train", no_training)
  assert sampling_order_trend.run_study(config, work) == json.loads(
    open(os.path.join(work, "report.json")).read()
  )
  with pytest.raises(ValueError, match=r"study\.seeds"):
    sampling_order_trend.run_study(toy_config(**{"study.seeds": 3}), work)
