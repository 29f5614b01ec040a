"""PNG grids of small images (digits, photo crops), drawn headless (see jgen/viz/plots.py)."""

import io

import numpy as np

from jgen.viz.plots import new_figure, save_figure, write_picture


def save_grid(path: str, rows, row_titles=None, title: str = "", cell_inches: float = 0.6):
  """rows: a list of image lists ([H, W, C] arrays in [0, 1]); one figure row per list."""
  rows = [[np.clip(np.asarray(image, np.float32), 0.0, 1.0) for image in row] for row in rows]
  columns = max(len(row) for row in rows)
  figure = new_figure(cell_inches * columns + (1.2 if row_titles else 0.2), cell_inches * len(rows))
  if len({image.shape for row in rows for image in row}) == 1:
    _draw_mosaic(figure, rows, columns, row_titles)
  else:
    _draw_cells(figure, rows, columns, row_titles)
  if title:
    figure.suptitle(title, fontsize=8)
  save_figure(figure, path)


def _as_rgb(image):
  return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def _draw_mosaic(figure, rows, columns, row_titles) -> None:
  """Images of one shape as one picture, a grey line between cells: one axes instead of one
  per image (a 4 x 16 grid drew in about 2 s as 64 axes)."""
  height, width = rows[0][0].shape[:2]
  mosaic = np.full((len(rows) * (height + 1) - 1, columns * (width + 1) - 1, 3), 0.5, np.float32)
  for r, row in enumerate(rows):
    for c, image in enumerate(row):
      top, left = r * (height + 1), c * (width + 1)
      mosaic[top : top + height, left : left + width] = _as_rgb(image)
  axes = figure.add_subplot(1, 1, 1)
  axes.imshow(mosaic, interpolation="nearest", vmin=0.0, vmax=1.0)
  axes.set_xticks([])
  axes.set_yticks([r * (height + 1) + height / 2 - 0.5 for r in range(len(rows))] if row_titles
                  else [])  # fmt: skip
  if row_titles:
    axes.set_yticklabels(row_titles, fontsize=6)
  for side in axes.spines.values():
    side.set_visible(False)


def _draw_cells(figure, rows, columns, row_titles) -> None:
  """Images of several shapes: one axes each, so that each keeps its own resolution."""
  grid = figure.add_gridspec(len(rows), columns, wspace=0.05, hspace=0.05)
  for r, row in enumerate(rows):
    for c, image in enumerate(row):
      axes = figure.add_subplot(grid[r, c])
      if image.shape[-1] == 1:
        axes.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
      else:
        axes.imshow(image, interpolation="nearest")
      axes.set_xticks([])
      axes.set_yticks([])
      if c == 0 and row_titles:
        axes.set_ylabel(row_titles[r], fontsize=6, rotation=0, ha="right", va="center")


def save_image(path: str, image_HxWxC) -> None:
  """One image at its own resolution (no axes), e.g. a DIP reconstruction."""
  import matplotlib.image

  image = np.clip(np.asarray(image_HxWxC, np.float32), 0.0, 1.0)
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  encoded = io.BytesIO()
  matplotlib.image.imsave(encoded, image, format="png")
  write_picture(path, encoded.getvalue())
