"""The generator table (issue 21, part 3): single digits as image data with a held-out
reference, the DGN's sample call through every code prior, and the study at toy size."""

import json
import os

import jax
import numpy as np
import pytest

from configs import dgn as dgn_config
from configs import study_generators
from jgen.data import digits, single_digits
from jgen.datasets import get_dataset
from jgen.datasets import images as image_datasets
from jgen.run import loop
from jgen.studies import generator_table
from jgen.trainers import dgn as dgn_trainer


def test_single_digits_train_on_the_first_digits_and_hold_out_the_rest():
  config = study_generators.get_config("runlocal").bases.per_sample_gan
  config.unlock()
  config.data.name = "digits"
  data = get_dataset(config.data)
  images, labels = digits.load_digits()
  train = data.training_set(jax.random.key(0), 100)
  np.testing.assert_array_equal(np.asarray(train), images[:100])  # the same set for every key
  np.testing.assert_array_equal(np.asarray(data.training_set(jax.random.key(1), 100)), train)
  np.testing.assert_array_equal(data.reference_images(1000), images[digits.HELD_OUT_START :])
  assert data.num_modes == 10 and data.sample_shape == (8, 8, 1)
  expected = np.bincount(labels[: digits.HELD_OUT_START], minlength=10) / digits.HELD_OUT_START
  np.testing.assert_allclose(data.source.mode_distribution(), expected)
  with pytest.raises(ValueError, match=r"data.num_train must be in \[1, 1500\].*held out"):
    single_digits.single_digits().training_set(jax.random.key(0), 1501)


def _tiny_dgn(**overrides):
  config = dgn_config.get_config("runlocal")
  config.model.architecture = "mlp"  # the same sample call as the conv G's, compiled faster
  config.update_from_flattened_dict(overrides)
  return config


def test_the_dgn_samples_through_the_prior_its_config_names():
  config = _tiny_dgn()
  dgn, root, data = dgn_trainer.build(config)
  state, _ = loop.run_chunk(dgn, dgn.init_state(root), root, data, 20)
  default = dgn.sample(state, root, 50)
  gaussian = dgn_trainer.sample_fitted_gaussian(dgn, state.g_params, state.latents, root, 50)
  np.testing.assert_array_equal(default, np.asarray(gaussian))  # the default is unchanged
  knn, _, _ = dgn_trainer.build(_tiny_dgn(**{"eval.sample_prior": "knn"}))
  drawn = knn.sample(state, root, 50)
  assert drawn.shape == default.shape and not np.array_equal(drawn, default)
  np.testing.assert_array_equal(drawn, knn.sample(state, root, 50))  # a pure function of key
  assert not np.array_equal(drawn, knn.sample(state, jax.random.key(9), 50))
  with pytest.raises(ValueError, match=r"eval\.code_flow_dir"):
    dgn_trainer.build(_tiny_dgn(**{"eval.sample_prior": "flow"}))
  with pytest.raises(ValueError, match=r"eval\.sample_prior"):
    dgn_trainer.build(_tiny_dgn(**{"eval.sample_prior": "uniform"}))


def test_the_score_counts_replayed_training_digits_as_copies_and_held_out_ones_not():
  config = study_generators.get_config("runlocal")
  data = generator_table.dataset("digits")
  train = data.source.training_images(64)
  spacing = generator_table.training_spacing("digits", 64, 1)
  copies = generator_table.score(train[np.arange(200) % 64], spacing, data, config.eval, 200)
  fresh = generator_table.score(data.source.reference_images(200), spacing, data, config.eval, 200)
  assert copies["memorization_rate"] == 1.0 and fresh["memorization_rate"] < 0.2
  assert set(copies) == {key for key, _, _ in generator_table.COLUMNS}
  # Only the first memorization_samples are checked: 50 copies, then 150 held-out digits.
  mixed = np.concatenate([train[:50], data.source.reference_images(150)])
  assert generator_table.score(mixed, spacing, data, config.eval, 50)["memorization_rate"] == 1.0


def test_one_spacing_per_training_set_each_seeds_own_for_stacked_digits():
  single = generator_table.training_spacing("digits", 64, 1)
  assert generator_table.training_spacing("digits", 64, 2) is single  # one set for every seed
  triples = {seed: generator_table.training_spacing("stacked_digits", 300, seed) for seed in (1, 2)}
  assert generator_table.training_spacing("stacked_digits", 300, 1) is triples[1]
  for seed, spacing in triples.items():
    train = image_datasets.training_images("stacked_digits", 300, seed)
    np.testing.assert_array_equal(np.unique(train.reshape(300, -1), axis=0), spacing.distinct)
    assert spacing.rate(train)["rate"] == 1.0
  assert not np.array_equal(triples[1].distinct, triples[2].distinct)


def test_the_toy_table_trains_each_family_once_and_scores_every_prior(tmp_path, monkeypatch):
  config = study_generators.get_config("runlocal")
  config.unlock()
  config.study.families = "dgn,per_sample_gan"
  config.study.seeds = "1"
  config.study.priors = "gaussian,flow"
  references = []
  real_reference_rows = generator_table.reference_rows
  monkeypatch.setattr(
    generator_table, "reference_rows", lambda c: references.append(1) or real_reference_rows(c)
  )
  result = generator_table.run_study(config, str(tmp_path))
  assert len(references) == 1  # once per study, not after each of its 2 cells
  assert list(result["rows"]) == ["dgn_gaussian", "dgn_flow", "per_sample_gan"]
  for row in result["rows"].values():
    assert row["seeds"] == [1] and row["steps"] == generator_table.steps(config)
    assert {key for key, _, _ in generator_table.COLUMNS} <= set(row["metrics"])
  dgn_runs = {name: result["rows"][name]["runs"][0] for name in ("dgn_gaussian", "dgn_flow")}
  assert dgn_runs["dgn_gaussian"] != dgn_runs["dgn_flow"]  # each prior drew its own samples
  assert result["reference"]["training digits replayed"]["memorization_rate"] == 1.0
  cell = tmp_path / "cells" / "dgn-s1"
  assert (cell / "samples_dgn_flow.png").exists() and (cell / "code_flow").is_dir()
  assert (tmp_path / "samples.png").exists()
  kept = np.load(cell / "samples_dgn_flow.npy")
  assert kept.shape == (16, 8, 8, 1)
  # A damaged samples file (a partial copy) is drawn again, not a crash of the report.
  (cell / "samples_dgn_flow.npy").write_bytes(b"\x93NUMPY partial")
  cell_info = {"name": "dgn-s1", "family": "dgn", "seed": 1}
  again_drawn = generator_table.row_samples(config, str(tmp_path), cell_info, "dgn_flow")
  np.testing.assert_array_equal(again_drawn, kept)
  np.testing.assert_array_equal(np.load(cell / "samples_dgn_flow.npy"), kept)
  report = (tmp_path / "report.md").read_text()
  assert "| dgn_flow |" in report and "| *held-out digits* |" in report
  # A rerun reads every finished cell's outcome and trains nothing.
  stamps = {p: os.path.getmtime(p) for p in tmp_path.glob("cells/*/metrics.jsonl")}
  again = generator_table.run_study(config, str(tmp_path))
  assert {p: os.path.getmtime(p) for p in stamps} == stamps
  assert json.loads(json.dumps(again["rows"])) == json.loads(json.dumps(result["rows"]))


def test_the_stacked_table_scores_against_fresh_triples_and_each_seeds_training_set():
  config = study_generators.get_config("stacked,runlocal")
  cell = generator_table.cells(config)[0]
  assert generator_table.cell_config(config, cell).data.name == "stacked_digits"
  result = generator_table.report(config, [])  # the reference rows, before any cell
  assert result["num_modes"] == 1000 and result["data"] == "stacked_digits"
  reference = result["reference"]
  assert reference["training triples replayed"]["memorization_rate"] == 1.0
  assert reference["fresh triples"]["memorization_rate"] < 0.2
  name, fresh = generator_table.unseen_images(config, 50)
  train = image_datasets.training_images("stacked_digits", config.study.num_train, 1)
  assert name == "fresh triples" and not (fresh[:, None] == train[None]).all(axis=(2, 3, 4)).any()
  report = generator_table.report_markdown(result)
  assert "stacked digits, 1,000 modes" in report and "modes of 1000" in report
  assert "| *fresh triples* |" in report


def test_a_dgn_on_stacked_digits_reconstructs_the_gans_training_set():
  from configs import stacked_digits_gan
  from jgen.trainers import gan as gan_trainer

  gan_config = stacked_digits_gan.get_config("runlocal")
  gan, _, triples = gan_trainer.build(gan_config)
  expected = np.asarray(gan.data.gather(triples, np.arange(gan_config.data.num_train)))
  config = _tiny_dgn(**{"data.name": "stacked_digits", "seed": gan_config.seed})
  config.data.num_train = gan_config.data.num_train
  np.testing.assert_array_equal(dgn_trainer.training_images(config), expected)
  dgn, _, images = dgn_trainer.build(config)
  assert dgn.image_shape == (8, 8, 3) and images.shape == (4096, 8, 8, 3)
  with pytest.raises(ValueError, match="valid choices: digits, stacked_digits"):
    dgn_trainer.training_images(_tiny_dgn(**{"data.name": "mnist"}))
