"""PNG grids of small images (digits, photo crops), drawn headless (see jgen/viz/plots.py)."""

import io

import numpy as np

from jgen.viz.plots import new_figure, save_figure, write_picture


def save_grid(path: str, rows, row_titles=None, title: str = "", cell_inches: float = 0.6):
  """rows: a list of image lists ([H, W, C] arrays in [0, 1]); one figure row per list."""
  rows = [[np.clip(np.asarray(image, np.float32), 0.0, 1.0) for image in row] for row in rows]
  columns = max(len(row) for row in rows)
  figure = new_figure(cell_inches * columns + (1.2 if row_titles else 0.2), cell_inches * len(rows))
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
  if title:
    figure.suptitle(title, fontsize=8)
  save_figure(figure, path)


def save_image(path: str, image_HxWxC) -> None:
  """One image at its own resolution (no axes), e.g. a DIP reconstruction."""
  import matplotlib.image

  image = np.clip(np.asarray(image_HxWxC, np.float32), 0.0, 1.0)
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  encoded = io.BytesIO()
  matplotlib.image.imsave(encoded, image, format="png")
  write_picture(path, encoded.getvalue())
