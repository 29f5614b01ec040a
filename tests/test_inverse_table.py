"""The inverse-problem table (jgen/studies/inverse_comparison.py, inverse_report.py): the paired
bootstrap difference, DPS's one-sample column, and the table written from known per-digit PSNRs."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import compare_inverse
from jgen.studies import effects, inverse_comparison, inverse_report


def test_paired_difference_of_a_constant_shift_is_the_shift_with_a_point_interval():
  base = np.linspace(5.0, 30.0, 64)  # a wide spread between digits, which pairing cancels
  result = effects.paired_difference(base + 1.5, base, resamples=10_000, seed=0)
  assert result["difference"] == pytest.approx(1.5)
  assert result["interval"] == pytest.approx([1.5, 1.5])
  assert result["units"] == 64


def test_paired_difference_excludes_zero_where_pairing_removes_the_spread_between_digits():
  rng = np.random.default_rng(1)
  base = rng.normal(20.0, 5.0, 64)  # digits differ by 5 dB; the methods by 0.3 +- 0.1
  a = base + 0.3 + rng.normal(0.0, 0.1, 64)
  paired = effects.paired_difference(a, base, resamples=10_000, seed=0)
  low, high = paired["interval"]
  assert 0 < low < paired["difference"] < high
  # The normal approximation's half-width, 1.96 sd / sqrt(n), within 15%.
  half_width = 1.96 * np.std(a - base, ddof=1) / np.sqrt(64)
  assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)
  # Unpaired, the same numbers give an interval holding 0: the pairing is what matters.
  low_2, high_2 = effects.two_group_difference(a, base, resamples=2_000, permutations=10)[
    "interval_95"
  ]
  assert low_2 < 0 < high_2


def test_paired_difference_includes_zero_for_symmetric_differences_and_is_reproducible():
  base = np.arange(64.0)
  a = base + np.tile([1.0, -1.0], 32) * np.repeat(np.linspace(0.5, 1.5, 32), 2)  # mean 0
  result = effects.paired_difference(a, base, resamples=10_000, seed=3)
  low, high = result["interval"]
  assert result["difference"] == pytest.approx(0.0, abs=1e-12) and low < 0 < high
  assert high == pytest.approx(-low, rel=0.15)  # symmetric differences, a symmetric interval
  assert effects.paired_difference(a, base, resamples=10_000, seed=3) == result
  assert effects.paired_difference(a, base, resamples=10_000, seed=4)["interval"] != [low, high]
  with pytest.raises(ValueError, match="paired"):
    effects.paired_difference(a, base[:-1])


def _dps(samples: int):
  """dps_fit with a stand-in noise predictor (eps = 0.1 x), 3 steps, on two 8x8 images."""
  config = compare_inverse.get_config("runlocal")
  config.dps_steps = 3
  config.dps_samples = samples
  settings = inverse_comparison.Settings.from_config(config)
  den = types.SimpleNamespace(network=types.SimpleNamespace(apply=lambda p, x, t: p * x))
  y_K = jnp.full((2, 8, 8, 1), 0.5)
  masks_K = jnp.ones((2, 8, 8, 1))
  key = jax.random.key(0)
  return inverse_comparison.dps_fit(
    den, 0.1, key, "denoise", y_K, masks_K, (8, 8, 1), settings
  ), settings


def test_dps_1_is_the_first_posterior_sample_of_those_dps_averages():
  (mean_1, first_1), _ = _dps(1)
  np.testing.assert_array_equal(mean_1, first_1)  # one sample: its mean is itself
  (mean_2, first_2), settings = _dps(2)
  assert mean_2.shape == first_2.shape == (2, 8, 8, 1)
  assert float(jnp.abs(mean_2 - first_2).max()) > 1e-3  # two samples: the mean is not the first
  # The first sample, drawn as dps_fit draws it: the image's key, its noise's first row.
  from jgen.losses import denoising

  key = jax.random.split(jax.random.key(0), 2)[0]
  noise = jax.random.normal(jax.random.fold_in(key, 0), (2, 8, 8, 1))

  def residual_norm(x0_hat):
    return jnp.sqrt(jnp.sum(((x0_hat + 1.0) / 2.0 - 0.5) ** 2, axis=(1, 2, 3)))

  x = denoising.posterior_sample(
    lambda x, t: 0.1 * x, noise, jax.random.fold_in(key, 1), 3, residual_norm, settings.dps_scale
  )
  samples = jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  np.testing.assert_allclose(first_2[0], samples[0], atol=1e-6)
  np.testing.assert_allclose(mean_2[0], samples.mean(axis=0), atol=1e-6)


# Per-digit PSNRs (dB) each fake method reaches on the 4 digits of a cell; dip_best, the oracle,
# is the highest and must never be a reference.
KNOWN = {
  "dgn_z": [20.0, 20.0, 20.0, 20.0],
  "dgn_z+G": [21.0, 23.0, 21.0, 23.0],
  "dip": [18.0, 18.0, 18.0, 18.0],
  "dip_best": [30.0, 30.0, 30.0, 30.0],
  "dps_1": [24.0, 24.0, 24.0, 24.0],
  "dps": [25.0, 26.0, 25.0, 26.0],
}


def _at(clean_K, method):
  """clean_K plus a +-e checkerboard: PSNR -20 log10(e), KNOWN[method] digit by digit."""
  e = 10.0 ** (-np.asarray(KNOWN[method]) / 20.0)
  board = np.where(np.indices((8, 8)).sum(axis=0) % 2, 1.0, -1.0)[..., None]
  return clean_K + jnp.asarray(e[:, None, None, None] * board, jnp.float32)


def test_the_table_pipeline_reports_per_digit_psnrs_and_paired_differences(tmp_path, monkeypatch):
  config = compare_inverse.get_config("runlocal")
  config.tasks = "denoise"
  config.num_images = 4
  shown = {}
  module = inverse_comparison
  monkeypatch.setattr(
    module,
    "train_dgn_prior",
    lambda c, w: (None, types.SimpleNamespace(g_params=None, latents=None)),
  )
  monkeypatch.setattr(module, "train_denoise_prior", lambda c, w: (None, None))
  # The observation is the clean digit itself, so each fake fit knows it.
  monkeypatch.setattr(
    module, "make_problems", lambda c, clean, key: {"denoise": (clean, jnp.ones_like(clean))}
  )
  monkeypatch.setattr(module, "dgn_fit", lambda *a: (_at(a[4], "dgn_z"), _at(a[4], "dgn_z+G")))
  monkeypatch.setattr(
    module, "dip_fit", lambda *a: (_at(a[3], "dip"), jnp.asarray(KNOWN["dip_best"]))
  )
  monkeypatch.setattr(module, "dps_fit", lambda *a: (_at(a[4], "dps"), _at(a[4], "dps_1")))
  monkeypatch.setattr(
    module.imgrid, "save_grid", lambda path, rows, titles, title: shown.update({title: titles})
  )
  result = module.run_study(config, str(tmp_path))

  assert shown["held_out digits, denoise"][-2:] == ["dps_1", "dps"]
  outcome = json.loads((tmp_path / "cells" / "train-denoise" / "outcome.json").read_text())
  for method, values in KNOWN.items():
    np.testing.assert_allclose(outcome["psnr_per_digit"][method], values, atol=1e-3)
    assert outcome["psnr"][method] == pytest.approx(np.mean(values), abs=1e-3)
  assert json.loads((tmp_path / "table.json").read_text()) == json.loads(json.dumps(result))
  for group in ("held_out", "train"):
    paired = result["paired"][f"{group}/denoise"]
    assert "input" not in paired
    assert {m: row["against"] for m, row in paired.items()} == {
      "dgn_z": "dps",
      "dgn_z+G": "dps",
      "dip": "dps",
      "dip_best": "dps",
      "dps_1": "dps",
      "dps": "dps_1",  # the best column meets the second best
    }
    assert paired["dgn_z"]["difference"] == pytest.approx(-5.5, abs=1e-3)
    low, high = paired["dgn_z"]["interval"]  # differences -5 and -6, two digits each
    assert -6.0 - 1e-3 <= low < -5.5 < high <= -5.0 + 1e-3
    assert paired["dps"]["difference"] == pytest.approx(1.5, abs=1e-3)
    low, high = paired["dps"]["interval"]
    assert 1.0 - 1e-3 <= low < 1.5 < high <= 2.0 + 1e-3
    single = result["paired_single"][f"{group}/denoise"]
    assert single["dps_1"]["against"] == "dgn_z+G" and single["dps"]["against"] == "dps_1"
    assert single["dps_1"]["difference"] == pytest.approx(2.0, abs=1e-3)
    assert single["dgn_z"]["against"] == "dps_1"  # a constant 4 dB below on every digit
    assert single["dgn_z"]["interval"] == pytest.approx([-4.0, -4.0], abs=1e-3)
  text = (tmp_path / "table.md").read_text()
  assert "| group/task | input | dgn_z | dgn_z+G | dip | dip_best (oracle) | dps_1 | dps |" in text
  assert "| train/denoise | dgn_z | dps | -5.50 | [-6.00, -5.00] | yes |" in text
  assert "| train/denoise | dgn_z | dps_1 | -4.00 | [-4.00, -4.00] | yes |" in text
  assert "dps_1 is one posterior sample" in text and "mean of 2 samples" in text


def test_the_best_other_column_is_never_the_oracle_or_the_input():
  means = {"input": 99.0, "dgn_z": 1.0, "dgn_z+G": 2.0, "dip": 3.0, "dip_best": 98.0}
  means |= {"dps_1": 4.0, "dps": 5.0}
  assert inverse_report.best_other(means, "dps") == "dps_1"
  assert inverse_report.best_other(means, "dip_best") == "dps"
  assert inverse_report.best_other(means, "dps_1", inverse_report.SINGLE_REFERENCES) == "dip"
