"""The study runner: cells, per-member outcomes, report statistics, resume."""

import json
import os

import pytest

from configs import compare_inverse, dgn_capacity, study_sampling_order
from jgen import studies
from jgen.core import registry
from jgen.studies import runner, stats
from jgen.studies import sampling_order as study
from jgen.trainers import gan as gan_trainer


def tiny_study(**study_overrides):
  config = study_sampling_order.get_config("runlocal")
  config.base.train.num_steps = 40
  config.base.train.steps_per_dispatch = 20
  config.base.train.log_every = 20
  config.base.train.eval_every = 20
  config.base.train.checkpoint_every = 20
  config.base.model.generator.width = 16
  config.base.model.discriminator.width = 16
  config.base.eval.num_samples = 200
  config.study.samplers = "epoch_shuffle,with_replacement"
  config.study.optimizers = "adam"
  config.study.discriminators = "per_sample"
  config.study.data = "ring8"
  for key, value in study_overrides.items():
    config.study[key] = value
  return config


def test_the_full_grid_has_72_cells_and_each_cell_config_differs_only_in_its_factors():
  config = study_sampling_order.get_config()
  grid = study.cells(config)
  assert len(grid) == 6 * 3 * 2 * 2 and len({c["name"] for c in grid}) == 72
  cell = next(c for c in grid if c["name"] == "grid25-set-sgd-streak8")
  run = study.cell_config(config, cell)
  assert (run.data.name, run.model.discriminator.name, run.model.set_size) == (
    "grid25",
    "deepsets",
    4,
  )
  assert (run.optimizer.name, run.optimizer.learning_rate) == ("sgd", 1e-2)
  assert (run.sampler.kind, run.sampler.streak_length) == ("streak", 8)
  assert run.population.size == 16 and run.seed == config.base.seed


def test_unknown_names_in_the_grid_are_refused():
  with pytest.raises(ValueError, match=r"unknown \['sorted'\]; valid: epoch_shuffle, full_batch"):
    study.cells(tiny_study(samplers="epoch_shuffle,sorted"))


def test_member_outcomes_from_population_rows():
  rows = [
    {"step": 10, "modes": [8, 8], "mode_counts": [[1] * 8, [1] * 8], "reverse_kl": [0.0, 0.0],
     "high_quality": [0.9, 0.9], "diversity": [1.0, 1.0]},
    {"step": 20, "modes": [8, 5], "mode_counts": [[1] * 8, [1] * 5 + [0] * 3],
     "reverse_kl": [0.0, 0.5], "high_quality": [0.9, 0.8], "diversity": [1.0, 0.9]},
  ]  # fmt: skip
  config = study_sampling_order.get_config().base.collapse
  first, second = stats.member_outcomes(rows, config)
  assert (first["collapsed"], first["time_to_collapse"]) == (False, None)
  assert (second["collapsed"], second["time_to_collapse"], second["modes"]) == (True, 20, 5)
  assert second["modes_over_time"] == [[10, 8], [20, 5]]
  assert list(second) == list(stats.OUTCOME_ORDER)  # outcome.json's order
  # A single run's rows hold plain values: one member, the same outcome as in a population.
  single = [{k: v if k == "step" else v[1] for k, v in row.items()} for row in rows]
  assert stats.member_outcomes(single, config) == [{**second, "seed_offset": 0}]
  # Without a detector config: the final measures and modes over time only (Table 1's).
  (plain,) = stats.member_outcomes(single)
  assert list(plain) == ["seed_offset", "modes", "high_quality", "reverse_kl", "modes_over_time"]


def test_a_grid_axis_is_parsed_one_way_for_every_study():
  config = study_sampling_order.get_config()
  assert runner.axis(config, "study.optimizers", config.study.settings.optimizers) == [
    "adam",
    "momentum",
    "sgd",
  ]
  numbers = {"sizes": " 4, 1,", "rates": "0.5,3", "zero": "1,0", "word": "1,x", "twice": "2,2"}
  numbers = {"study": {**numbers, "data": ",", "inf": "1,inf"}}
  assert runner.axis(numbers, "study.sizes", number=int) == [4, 1]
  assert runner.axis(numbers, "study.rates", number=float) == [0.5, 3.0]
  for key, kind in (("zero", int), ("word", int), ("inf", float)):
    with pytest.raises(ValueError, match=rf"study\.{key} must be comma-separated {kind.__name__}"):
      runner.axis(numbers, f"study.{key}", number=kind)
  with pytest.raises(ValueError, match=r"study\.twice lists 2 more than once"):
    runner.axis(numbers, "study.twice", number=int)
  with pytest.raises(ValueError, match=r"study\.data is empty"):
    runner.axis(numbers, "study.data")


def test_a_record_lacking_keys_is_no_change_only_where_every_cell_on_disk_shows_them(tmp_path):
  """Keys of the config that the record lacks are checked against each cell's own record."""
  config = tiny_study()
  run = study.cell_config(config, study.cells(config)[0])
  cell_dir = tmp_path / "cells" / "a"
  cell_dir.mkdir(parents=True)
  record = json.loads(json.dumps(config.to_dict()))
  del record["study"]["settings"]
  (tmp_path / runner.CONFIG_FILE).write_text(json.dumps(record))
  (cell_dir / "outcome.json").write_text("{}")  # a cell that is not a run: nothing shows them
  with pytest.raises(ValueError, match=r"cells on disk trained otherwise: a \(no readable config"):
    runner.check_config(str(tmp_path), config, cell_configs={"a": run})
  (cell_dir / "config.json").write_text(json.dumps(run.to_dict()))
  other = study.cell_config(config, study.cells(config)[1])
  with pytest.raises(ValueError, match=r"a \(sampler.kind: 'epoch_shuffle' -> 'with_replace"):
    runner.check_config(str(tmp_path), config, cell_configs={"a": other})
  runner.check_config(str(tmp_path), config, cell_configs={"a": run})
  assert json.loads((tmp_path / runner.CONFIG_FILE).read_text()) == json.loads(
    json.dumps(config.to_dict())
  )


def test_cells_recorded_before_an_added_key_resume_and_a_changed_one_is_refused(tmp_path):
  """A study whose record and cells predate a key of workdir.ADDED_KEYS resumes when the key's
  value does what those cells did, and is refused when it does not."""
  config = tiny_study()
  run = study.cell_config(config, study.cells(config)[0])
  cell_dir = tmp_path / "cells" / "a"
  cell_dir.mkdir(parents=True)
  record, cell_record = json.loads(json.dumps(config.to_dict())), run.to_dict()
  del record["base"]["eval"]["bn_refresh_batches"]
  del cell_record["eval"]["bn_refresh_batches"]
  (tmp_path / runner.CONFIG_FILE).write_text(json.dumps(record))
  (cell_dir / "config.json").write_text(json.dumps(cell_record))
  runner.check_config(str(tmp_path), config, cell_configs={"a": run})
  (tmp_path / runner.CONFIG_FILE).write_text(json.dumps(record))
  run.eval.bn_refresh_batches = 3
  config.base.eval.bn_refresh_batches = 3
  with pytest.raises(ValueError, match=r"a \(eval.bn_refresh_batches: 0 -> 3\)"):
    runner.check_config(str(tmp_path), config, cell_configs={"a": run})


def _synthetic(sampler, collapsed_flags):
  cell = {"name": sampler, "data": "ring8", "discriminator": "set", "optimizer": "adam",
          "sampler": sampler}  # fmt: skip
  outcomes = [
    {"collapsed": c, "modes": 5 if c else 8, "high_quality": 0.9, "reverse_kl": 0.1,
     "time_to_collapse": 1000 if c else None, "modes_over_time": [[1000, 5 if c else 8]]}
    for c in collapsed_flags
  ]  # fmt: skip
  return cell, outcomes


def test_report_statistics_on_synthetic_outcomes_with_known_answers():
  finished = [
    _synthetic("epoch_shuffle", [True] * 8 + [False] * 2),
    _synthetic("with_replacement", [True] * 1 + [False] * 5),
  ]
  report = study.build_report(finished)
  (block,) = report["blocks"]
  test = block["samplers_compared"]
  assert test["method"] == "Fisher's exact test, two-sided"
  assert test["p_value"] == pytest.approx(0.034965, abs=1e-6)  # [[8, 2], [1, 5]]
  first = block["cells"][0]
  assert first["collapse_rate"] == 0.8
  # Wilson 95% by hand, z = 1.959964: 8/10 -> center 0.716740, half-width 0.226578.
  assert first["collapse_rate_wilson_95"] == pytest.approx([0.490162, 0.943318], abs=1e-6)
  second = block["cells"][1]
  assert second["collapse_rate_wilson_95"] == pytest.approx([0.030053, 0.563503], abs=1e-6)
  assert first["modes"]["mean"] == pytest.approx(5.6)
  assert first["time_to_collapse"]["median"] == 1000
  markdown = study.report_markdown(report, study_sampling_order.get_config())
  assert "| epoch_shuffle | 8/10 | 0.80 [0.49, 0.94] |" in markdown
  assert "p = 0.0350" in markdown
  assert "| with_replacement | 1/6 | 0.17 [0.03, 0.56] |" in markdown


def test_studies_are_chosen_by_the_config_name():
  for config, module in (
    (study_sampling_order.get_config(), "sampling_order"),
    (dgn_capacity.get_config(), "dgn_capacity"),
    (compare_inverse.get_config(), "inverse_comparison"),
  ):
    chosen = studies.get_study(studies.study_name(config))
    assert chosen.__name__ == f"jgen.studies.{module}"
    assert callable(chosen.run_study) and chosen.REPORT_FILE.endswith(".md")
  # A config without study_kind is the sampling-order study.
  assert studies.study_name({}) == "sampling_order"
  valid = (
    "dgn_capacity, generator_table, inverse_comparison, optimizer_sensitivity, pacgan_table1, "
    "recovery, sampling_order, sampling_order_trend"
  )
  with pytest.raises(registry.UnknownNameError, match=valid):
    studies.get_study("zdim")


def test_a_half_finished_study_resumes_without_rerunning_finished_cells(tmp_path, monkeypatch):
  real_train = gan_trainer.train_and_evaluate
  trained = []

  def crash_on_second_cell(config, work_dir):
    trained.append(os.path.basename(work_dir))
    if len(trained) == 2:
      raise KeyboardInterrupt("simulated crash in the second cell")
    return real_train(config, work_dir)

  monkeypatch.setattr(gan_trainer, "train_and_evaluate", crash_on_second_cell)
  with pytest.raises(KeyboardInterrupt):
    study.run_study(tiny_study(), str(tmp_path))
  first = tmp_path / "cells" / "ring8-per_sample-adam-epoch_shuffle" / "outcome.json"
  stamp = first.stat().st_mtime_ns
  trained.clear()
  monkeypatch.setattr(
    gan_trainer,
    "train_and_evaluate",
    lambda c, w: trained.append(os.path.basename(w)) or real_train(c, w),
  )
  report = study.run_study(tiny_study(), str(tmp_path))
  assert trained == ["ring8-per_sample-adam-with_replacement"]
  assert first.stat().st_mtime_ns == stamp
  assert [c["sampler"] for c in report["blocks"][0]["cells"]] == [
    "epoch_shuffle",
    "with_replacement",
  ]
  assert json.loads((tmp_path / "report.json").read_text()) == report
  for name in ("report.md", "collapse_rate.png", "modes_over_time.png"):
    assert (tmp_path / name).exists()
  outcomes = json.loads(first.read_text())["outcomes"]
  assert len(outcomes) == 2  # the runlocal population
