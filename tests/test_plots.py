"""The PNGs are written, are PNGs, have the pinned pixel size; curves skip rows lacking a key,
show a point for a single evaluation, count modes in whole numbers, label every axis, and mark
where collapse cases fired. Figures are inspected as matplotlib objects, not as pixels."""

import gc
import math
import pathlib
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import pictures_rendered
from matplotlib.figure import Figure

from jgen.data.mixtures import get_mixture
from jgen.evals import modes
from jgen.viz import plots


@pytest.fixture(autouse=True, scope="module")
def _rendered():
  """Every picture here is rendered: this file is about them (conftest.py leaves the others'
  unrendered)."""
  with pictures_rendered():
    yield


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


def _live_figures() -> int:
  gc.collect()
  return sum(isinstance(o, Figure) for o in gc.get_objects())


def test_figures_are_freed_after_writing(tmp_path):
  # A figure kept alive (pyplot's registry, a cache) would grow memory over a long run's
  # thousands of frames; every figure must be garbage once its PNG is written.
  ring8 = get_mixture("ring8")
  before = _live_figures()
  for i in range(3):
    plots.scatter_samples(tmp_path / f"{i}.png", ring8.means_Kx2, ring8, "t", None)
    plots.metric_curves(tmp_path / f"c{i}.png", [{"step": 0, "x": 1.0}], ["x"])
    plots.compare_branches(tmp_path / f"b{i}.png", {"a": [{"step": 0, "x": 1.0}]}, ["x"])
    plots.image_grid(tmp_path / f"g{i}.png", np.zeros((4, 8, 8, 3)), "t")
  assert _live_figures() == before


def test_drawing_does_not_import_pyplot(tmp_path):
  # pyplot needs a display backend and keeps figures until closed; the object API needs neither.
  code = (
    "import sys, numpy as np; from jgen.viz import plots; from jgen.data.mixtures import "
    "get_mixture; m = get_mixture('ring8'); "
    f"plots.scatter_samples({str(tmp_path / 's.png')!r}, m.means_Kx2, m, 't'); "
    f"plots.metric_curves({str(tmp_path / 'c.png')!r}, [{{'step': 0, 'modes': 1}}], ['modes']); "
    "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
  )
  root = pathlib.Path(__file__).resolve().parents[1]
  result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]


def _drawn(axes):
  """The lines with data on them (not case marks), as (label, marker, number of points)."""
  return [
    (line.get_label(), line.get_marker(), len(line.get_xdata()))
    for line in axes.get_lines()
    if line.get_gid() != plots.CASE_GID
  ]


def test_a_population_with_one_evaluation_draws_its_members_as_points():
  rows = [{"step": 0, "g_loss": [0.5, 0.6]}, {"step": 100, "modes": [3, 5, 8], "g_loss": [1, 2]}]
  figure = plots.curves_figure(rows, ["modes", "g_loss"])
  modes_axes = figure.axes[0]
  drawn = _drawn(modes_axes)
  assert len(drawn) == 4  # three members and their mean
  for label, marker, points in drawn:
    assert points == 1 and marker not in ("", "None", None), (label, marker)
  # A long series needs no markers: the line shows it.
  long_rows = [{"step": s, "modes": [s % 3, 1]} for s in range(100)]
  figure = plots.curves_figure(long_rows, ["modes"])
  assert all(marker in ("", "None") for _, marker, _ in _drawn(figure.axes[0]))


def test_mode_counts_get_integer_ticks_and_every_curve_a_y_label():
  rows = [{"step": 0, "modes": 7, "reverse_kl": 0.1}, {"step": 100, "modes": 8, "reverse_kl": 0.05}]
  figure = plots.curves_figure(rows, ["modes", "reverse_kl", "never_logged"])
  figure.canvas.draw()
  modes_axes, kl_axes, empty_axes = figure.axes
  ticks = modes_axes.get_yticks()
  assert len(ticks) >= 2 and np.all(ticks == np.round(ticks)), ticks
  assert not np.all(kl_axes.get_yticks() == np.round(kl_axes.get_yticks()))  # not forced
  assert modes_axes.get_ylabel() == "modes covered"
  assert "KL" in kl_axes.get_ylabel()
  assert empty_axes.get_ylabel() == "never_logged"  # an unknown key labels itself
  branches = plots.branches_figure({"recorded": rows, "counterfactual": rows}, ["modes"])
  branches.canvas.draw()
  assert branches.axes[0].get_ylabel() == "modes covered"
  assert np.all(branches.axes[0].get_yticks() == np.round(branches.axes[0].get_yticks()))


def test_curves_carry_the_run_name_and_mark_collapse_cases():
  rows = [{"step": s, "modes": 8 - s // 100, "diversity": 1 / (1 + s)} for s in range(0, 600, 50)]
  plain = plots.curves_figure(rows, ["modes", "diversity"])
  assert plain.get_suptitle() == ""
  assert all(not _case_marks(axes) for axes in plain.axes)
  figure = plots.curves_figure(
    rows, ["modes", "diversity"], title="runs/demo", case_steps=[250, 400]
  )
  assert figure.get_suptitle() == "runs/demo"
  for axes in figure.axes:
    assert sorted(_case_marks(axes)) == [250, 400]
    assert "collapse case" in [t.get_text() for t in axes.get_legend().get_texts()]


def _case_marks(axes) -> list[float]:
  marks = []
  for line in axes.get_lines():
    xs = np.asarray(line.get_xdata(), np.float64)
    if line.get_gid() == plots.CASE_GID and len(xs) == 2 and xs[0] == xs[1]:
      marks.append(float(xs[0]))
  return marks


def test_branches_name_the_case_and_the_override(tmp_path):
  rows = {"recorded": [{"step": 40, "modes": 2}], "counterfactual": [{"step": 40, "modes": 3}]}
  figure = plots.branches_figure(
    rows, ["modes"], case="00000040-diversity_drop", overrides=["config.sampler.kind=streak"]
  )
  title = figure.get_suptitle()
  assert "00000040-diversity_drop" in title and "config.sampler.kind=streak" in title
  legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
  assert legend == ["recorded", "counterfactual"]
  plots.compare_branches(tmp_path / "b.png", rows, ["modes"], case="c", overrides=["config.x=1"])
  assert _png_size(tmp_path / "b.png") == (320, 240)
