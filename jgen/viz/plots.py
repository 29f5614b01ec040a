"""PNG figures of 2D samples and of metric curves, drawn headless.

Figures are built on matplotlib's object API with an Agg canvas rather than pyplot: pyplot keeps
every figure in a global registry until closed, which leaks across the thousands of calls a long
run or a sweep makes, and it would need a display backend.

Every picture is drawn in memory and then put in place atomically (`save_figure`,
`write_picture`): a full disk leaves the previous picture whole instead of a truncated one, and
is reported in one line naming the file (PictureError) instead of matplotlib's traceback.

matplotlib is imported where a figure is drawn, not with the module: every training process
imports this one (through the run loop), and most draw nothing for seconds or at all, while
the import costs ~0.4 s of each process's start.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from jgen.core import jsonl
from jgen.data.mixtures import Mixture
from jgen.evals import from_files, modes

if TYPE_CHECKING:
  from matplotlib.figure import Figure

DPI = 100
SCATTER_INCHES = 5.0  # 500 x 500 px
CURVE_INCHES = (3.2, 2.4)  # per subplot: 320 x 240 px
MAX_CURVE_COLUMNS = 3

# Fixed per dataset so that frames of one run, and runs of one dataset, are comparable by eye.
_VIEW_HALF_WIDTH = {"ring8": 1.5, "grid25": 6.0}


def _view_half_width(mixture: Mixture) -> float:
  if mixture.name in _VIEW_HALF_WIDTH:
    return _VIEW_HALF_WIDTH[mixture.name]
  return 1.25 * float(np.abs(mixture.means_Kx2).max()) + 6 * mixture.sigma


def new_figure(width_in: float, height_in: float) -> Figure:
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
  FigureCanvasAgg(figure)
  return figure


class PictureError(RuntimeError):
  """A picture could not be written (a full disk, a read-only folder); its message is one line."""


def write_picture(path: str, data: bytes) -> None:
  """Replaces the file at `path` by the encoded picture `data`, atomically."""
  try:
    jsonl.replace_bytes(path, data)
  except OSError as error:
    raise PictureError(
      f"cannot write the picture {path} ({type(error).__name__}: {error}); any earlier file "
      "there is unchanged: free disk space (or fix the folder's permissions) and rerun the "
      "same command"
    ) from None


def save_figure(figure: Figure, path: str, dpi: float = DPI) -> None:
  """Writes `figure` as a PNG at `path` (see write_picture)."""
  write_picture(path, png_bytes(figure, dpi))


def png_bytes(figure: Figure, dpi: float = DPI) -> bytes:
  """`figure` rendered and encoded as a PNG: the costly part of a picture (layout, drawing)."""
  encoded = io.BytesIO()
  figure.savefig(encoded, format="png", dpi=dpi)
  return encoded.getvalue()


def metrics_line(metrics: dict, num_modes: int) -> str:
  """'modes 7/8 · high quality 93.1% · reverse KL 0.021' from mode_metrics or its JSON row."""
  row = modes.to_json_row({k: metrics[k] for k in ("modes", "high_quality", "reverse_kl")})
  kl = "n/a" if row["reverse_kl"] is None else f"{row['reverse_kl']:.3f}"
  return (
    f"modes {row['modes']}/{num_modes} · high quality {100 * row['high_quality']:.1f}% · "
    f"reverse KL {kl}"
  )


def scatter_samples(
  path: str, samples_Nx2, mixture: Mixture, title: str, metrics: dict | None = None
) -> None:
  """Writes a PNG of samples over the mixture's means and 3-sigma circles."""
  samples_Nx2 = np.asarray(samples_Nx2, np.float64)
  half_width = _view_half_width(mixture)
  figure = new_figure(SCATTER_INCHES, SCATTER_INCHES)
  axes = figure.add_subplot()
  radius = modes.HIGH_QUALITY_SIGMAS * mixture.sigma
  from matplotlib.patches import Circle

  for mean in mixture.means_Kx2:
    axes.add_patch(Circle(tuple(mean), radius, fill=False, color="0.55", linewidth=0.8))
  # Means under the samples, so that samples sitting on a mode stay visible.
  axes.scatter(
    *mixture.means_Kx2.T,
    s=30,
    marker="x",
    color="black",
    linewidths=1,
    label="modes (3σ)",
    zorder=1,
  )
  axes.scatter(*samples_Nx2.T, s=3, alpha=0.4, color="C0", linewidths=0, label="samples", zorder=2)
  outside = int(np.sum(np.any(np.abs(samples_Nx2) > half_width, axis=1)))
  if outside:
    # Points off the fixed view would otherwise vanish silently and flatter a diverged run.
    axes.text(
      0.02,
      0.02,
      f"{outside} of {len(samples_Nx2)} samples outside the view",
      transform=axes.transAxes,
      fontsize=7,
      color="C3",
    )
  axes.set_xlim(-half_width, half_width)
  axes.set_ylim(-half_width, half_width)
  axes.set_aspect("equal")
  axes.legend(loc="upper right", fontsize=7, markerscale=2)
  axes.tick_params(labelsize=7)
  full_title = title if metrics is None else f"{title}\n{metrics_line(metrics, mixture.num_modes)}"
  axes.set_title(full_title, fontsize=9)
  save_figure(figure, path)


def _as_float(value) -> float:
  return math.nan if value is None else float(value)


def metric_series(rows: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps [T], values [T] or [T, P]) of the rows that hold both `step` and `key`."""
  steps, values = [], []
  for row in rows:
    if "step" not in row or key not in row:
      continue
    steps.append(row["step"])
    value = row[key]
    # A population run logs one value per member; None is a logged NaN (e.g. reverse KL).
    values.append(
      [_as_float(v) for v in value] if isinstance(value, (list, tuple)) else _as_float(value)
    )
  try:
    return np.asarray(steps, np.float64), np.asarray(values, np.float64)
  except ValueError:
    raise ValueError(f"metric {key!r} mixes scalars and lists of different lengths") from None


# What each curve measures, for its y-axis; a key not listed is its own label.
Y_LABELS = {
  "modes": "modes covered",
  "high_quality": "fraction within 3σ of a mode",
  "reverse_kl": "KL to the data's modes",
  "kl": "KL to the data's modes",
  "diversity": "mean pairwise distance",
  "classifier_fid": "FID, classifier features",
  "d_loss": "discriminator loss",
  "g_loss": "generator loss",
  "loss": "loss",
  "psnr": "PSNR (dB)",
  "psnr_input": "PSNR (dB)",
  "recon_psnr_mean": "PSNR (dB)",
  "exact_fraction": "fraction restored exactly",
  "sharpness_ratio": "sharpness / data's",
}
# Counts: their y-axis gets integer ticks.
COUNT_KEYS = frozenset({"modes"})
# Below this many points a curve also gets markers: a run with one evaluation has no line to
# draw, only a point.
MARKER_BELOW_POINTS = 30
# Outside matplotlib's default cycle, which colours a population's members.
CASE_COLOR = "#e7298a"
CASE_GID = "collapse_case"


def _label_axes(axes, key: str) -> None:
  axes.set_title(key, fontsize=9)
  axes.set_xlabel("step", fontsize=8)
  axes.set_ylabel(Y_LABELS.get(key, key), fontsize=8)
  if key in COUNT_KEYS:
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
  axes.tick_params(labelsize=7)
  axes.grid(alpha=0.3)


def _marker(steps_T) -> str:
  return "o" if len(steps_T) < MARKER_BELOW_POINTS else ""


def curves_figure(
  rows: Sequence[dict],
  keys: Sequence[str],
  *,
  title: str | None = None,
  case_steps: Sequence[int] = (),
) -> Figure:
  """One subplot per key against `step`; rows lacking the key are skipped. A population's
  per-member values draw one thin line per member and their mean. `title` (e.g. the run's
  name) heads the figure; `case_steps`, the steps where collapse cases fired, are marked by
  vertical dashed lines on every subplot."""
  if not keys:
    raise ValueError("metric_curves needs at least one key")
  columns = min(len(keys), MAX_CURVE_COLUMNS)
  lines = math.ceil(len(keys) / columns)
  figure = new_figure(CURVE_INCHES[0] * columns, CURVE_INCHES[1] * lines)
  for i, key in enumerate(keys):
    axes = figure.add_subplot(lines, columns, i + 1)
    steps_T, values = metric_series(rows, key)
    marker = _marker(steps_T)
    if steps_T.size == 0:
      axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    elif values.ndim == 1:
      axes.plot(steps_T, values, color="C0", linewidth=1.2, marker=marker, markersize=3)
    else:
      axes.plot(steps_T, values, linewidth=0.8, alpha=0.6, marker=marker, markersize=2.5)
      present = ~np.isnan(values)
      # By hand rather than np.nanmean, which warns on steps where every member is NaN.
      mean_T = np.where(
        present.any(axis=1), np.nansum(values, axis=1) / np.maximum(present.sum(axis=1), 1), np.nan
      )
      axes.plot(
        steps_T, mean_T, color="black", linewidth=1.4, marker=marker, markersize=3, label="mean"
      )
    for j, step in enumerate(case_steps):
      label = "collapse case" if j == 0 else None
      axes.axvline(step, color=CASE_COLOR, linestyle="--", linewidth=0.9, label=label, gid=CASE_GID)
    if values.ndim == 2 or case_steps:
      axes.legend(fontsize=7)
    _label_axes(axes, key)
  if title:
    figure.suptitle(title, fontsize=9)
  return figure


def metric_curves(
  path: str,
  rows: Sequence[dict],
  keys: Sequence[str],
  *,
  title: str | None = None,
  case_steps: Sequence[int] = (),
) -> None:
  """Writes curves_figure(rows, keys, ...) as a PNG."""
  save_figure(curves_figure(rows, keys, title=title, case_steps=case_steps), path)


def branches_title(case: str | None, overrides: Sequence[str]) -> str | None:
  """'case ID · override: config.a=1 config.b=2', or what of it is known."""
  parts = []
  if case:
    parts.append(f"case {case}")
  if overrides:
    parts.append("override: " + " ".join(overrides))
  return " · ".join(parts) or None


def branches_figure(
  branches: dict[str, Sequence[dict]],
  keys: Sequence[str],
  *,
  case: str | None = None,
  overrides: Sequence[str] = (),
) -> Figure:
  """One subplot per key, one labelled line per branch (e.g. recorded vs counterfactual),
  headed by the case's id and the override the counterfactual applies."""
  if not keys:
    raise ValueError("compare_branches needs at least one key")
  figure = new_figure(CURVE_INCHES[0] * len(keys), CURVE_INCHES[1])
  for i, key in enumerate(keys):
    axes = figure.add_subplot(1, len(keys), i + 1)
    for color, (name, rows) in enumerate(branches.items()):
      steps_T, values = metric_series(rows, key)
      axes.plot(steps_T, values, color=f"C{color}", marker=".", linewidth=1.2, label=name)
    _label_axes(axes, key)
    axes.legend(fontsize=7)
  title = branches_title(case, overrides)
  if title:
    figure.suptitle(title, fontsize=9)
  return figure


def compare_branches(
  path: str,
  branches: dict[str, Sequence[dict]],
  keys: Sequence[str],
  *,
  case: str | None = None,
  overrides: Sequence[str] = (),
) -> None:
  """Writes branches_figure(branches, keys, ...) as a PNG."""
  save_figure(branches_figure(branches, keys, case=case, overrides=overrides), path)


def tile_images(images_NxHxWxC, columns: int) -> np.ndarray:
  """One [rows*H + gaps, columns*W + gaps, C] canvas of the images, 1-pixel white gaps."""
  images = np.clip(np.asarray(images_NxHxWxC, np.float32), 0.0, 1.0)
  n, h, w, c = images.shape
  rows = math.ceil(n / columns)
  canvas = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1, c), np.float32)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = image
  return canvas


def image_grid(path: str, images_NxHxWxC, title: str, metrics: dict | None = None, n: int = 100):
  """Writes a PNG of the first `n` images in a square grid (C = 1 grey, C = 3 as RGB: each
  channel of a stacked-digit sample is one digit, so a sample shows as three coloured digits)."""
  images = np.asarray(images_NxHxWxC)[:n]
  columns = math.ceil(math.sqrt(len(images)))
  canvas = tile_images(images, columns)
  figure = new_figure(SCATTER_INCHES, SCATTER_INCHES + 0.4)
  axes = figure.add_subplot()
  axes.imshow(
    canvas[..., 0] if canvas.shape[-1] == 1 else canvas,
    cmap="gray",
    vmin=0,
    vmax=1,
    interpolation="nearest",
  )
  axes.set_axis_off()
  if metrics is not None and "kl" in metrics:
    fid = metrics.get("classifier_fid")
    num_modes = len(metrics.get("mode_counts", ())) or 1000  # 10 for MNIST, 1,000 stacked
    title += f"\nmodes {metrics['modes']}/{num_modes} · KL {metrics['kl']:.3f}"
    title += "" if fid is None else f" · classifier FID {fid:.2f}"
  axes.set_title(title, fontsize=9)
  save_figure(figure, path)


def evaluation_plot(path: str, data: str, samples, title: str, row: dict) -> None:
  """`python -m jgen.evaluate --plot`: a scatter over the mixture's modes (2D) or a grid of the
  first images, titled with the row's metrics. Raises from_files.EvaluateError if the file
  cannot be written."""
  try:
    if data == from_files.STACKED_DIGITS:
      image_grid(path, samples, title, row)
    else:
      scatter_samples(path, samples, from_files.get_mixture(data), title, row)
  except OSError as e:
    raise from_files.EvaluateError(f"cannot write plot {path} ({e})") from None
