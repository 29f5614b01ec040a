"""The PNGs are written, are PNGs, have the pinned pixel size; curves skip rows lacking a key."""

import math
import struct

import jax
import matplotlib.pyplot as plt
import numpy as np
import pytest

from jgen.data.mixtures import get_mixture
from jgen.evals import modes
from jgen.viz import plots


def _png_size(path):
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  assert data[12:16] == b"IHDR"
  return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_scatter_samples_writes_a_png_of_fixed_size(tmp_path, name):
  mixture = get_mixture(name)
  samples = np.array(mixture.sample(jax.random.key(0), 500))
  samples[0] = 100.0  # off the fixed view
  metrics = modes.mode_metrics(samples, mixture)
  plots.scatter_samples(tmp_path / "a.png", samples, mixture, "step 100", metrics)
  plots.scatter_samples(tmp_path / "b.png", samples, mixture, "step 100", None)
  assert _png_size(tmp_path / "a.png") == (500, 500)
  assert _png_size(tmp_path / "b.png") == (500, 500)


def test_metrics_line_reads_jax_metrics_and_json_rows():
  ring8 = get_mixture("ring8")
  far = modes.mode_metrics(np.full((4, 2), 10.0, np.float32), ring8)
  assert plots.metrics_line(far, 8) == "modes 0/8 · high quality 0.0% · reverse KL n/a"
  row = {"modes": 7, "high_quality": 0.931, "reverse_kl": 0.0214, "mode_counts": [1] * 8}
  assert plots.metrics_line(row, 8) == "modes 7/8 · high quality 93.1% · reverse KL 0.021"


def test_metric_series_skips_rows_lacking_the_key():
  rows = [
    {"step": 0, "modes": 1, "g_loss": 0.5},
    {"step": 100, "g_loss": 0.4},  # an eval-less log step
    {"step": 200, "modes": 5, "reverse_kl": None},
    {"modes": 9},  # no step: cannot be placed
  ]
  steps, values = plots.metric_series(rows, "modes")
  np.testing.assert_array_equal(steps, [0, 200])
  np.testing.assert_array_equal(values, [1, 5])
  steps, values = plots.metric_series(rows, "reverse_kl")
  assert steps.tolist() == [200] and math.isnan(values[0])
  steps, values = plots.metric_series(
    [{"step": 1, "d": [1.0, None]}, {"step": 2, "d": [2, 3]}], "d"
  )
  assert values.shape == (2, 2) and math.isnan(values[0, 1])
  with pytest.raises(ValueError, match="'d'"):
    plots.metric_series([{"step": 1, "d": [1.0, 2.0]}, {"step": 2, "d": 3.0}], "d")


@pytest.mark.parametrize(("num_keys", "size"), [(1, (320, 240)), (3, (960, 240)), (4, (960, 480))])
def test_metric_curves_writes_a_png_of_grid_size(tmp_path, num_keys, size):
  rows = [{"step": s, "modes": s % 9, "reverse_kl": None if s == 0 else 1 / s} for s in range(50)]
  rows += [{"step": 60, "d_loss": [0.1, 0.2, 0.3]}, {"step": 70, "d_loss": [0.2, 0.1, None]}]
  keys = ["modes", "reverse_kl", "d_loss", "never_logged"][:num_keys]
  plots.metric_curves(tmp_path / "c.png", rows, keys)
  assert _png_size(tmp_path / "c.png") == size


def test_no_figures_left_in_pyplot_registry(tmp_path):
  ring8 = get_mixture("ring8")
  for i in range(3):
    plots.scatter_samples(tmp_path / f"{i}.png", ring8.means_Kx2, ring8, "t", None)
    plots.metric_curves(tmp_path / f"c{i}.png", [{"step": 0, "x": 1.0}], ["x"])
  assert plt.get_fignums() == []
