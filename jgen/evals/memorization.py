"""How often a generator's samples are copies of training images.

A sample s is judged against the spacing of the training set where it lands: with x_j(s) its
nearest training image,

  d(s)      = ||s - x_j(s)||                       (L2 over all pixels)
  r(x)      = distance from x to its nearest other (distinct) training image
  ratio(s)  = d(s) / r(x_j(s))

and s counts as a copy when ratio(s) < threshold (default 0.5: s sits closer to x_j than half
the distance to x_j's nearest neighbour, i.e. nearer to that image than anything "between"
training images would be). A fixed distance threshold would not do: pixel distances between
real images differ by orders of magnitude across datasets and across dense and sparse regions
of one dataset.

Why a reference matters: even a perfect generator, drawing fresh samples from the true
distribution, lands within half a neighbour spacing of some training image part of the time,
so its rate is not zero. A generator's rate means something only beside the rate of held-out
real images measured against the same training set:

  generated = memorization_rate(samples, train_images)
  reference = memorization_rate(held_out_images, train_images)

Report both; memorization is a generator's rate clearly above the reference.
"""

import numpy as np

# Entries per block of samples ([rows, num_train] distances, [rows, values] differences), ~32 MB
# of float64: 10,000 samples against tens of thousands of images never build one huge matrix.
_BLOCK_ENTRIES = 4_000_000


def _flatten(images, name: str) -> np.ndarray:
  images = np.asarray(images, np.float64)
  if images.ndim < 2:
    raise ValueError(
      f"{name} must have a leading batch axis and at least one more axis, got shape {images.shape}"
    )
  if len(images) == 0:
    raise ValueError(f"{name} is empty: need at least one image")
  flat = images.reshape(len(images), -1)
  if not np.all(np.isfinite(flat)):
    raise ValueError(f"{name} contain NaN or infinity")
  return flat


def _nearest(queries: np.ndarray, references: np.ndarray, exclude_self: bool):
  """(index, distance) of each query row's nearest reference row, skipping the row's own
  index when the queries are the references.

  The index comes from the fast expanded form |q|^2 - 2 q.r + |r|^2; the distance is then
  recomputed by subtraction, so that an exact copy gives exactly 0, not the expansion's
  rounding noise.
  """
  reference_norms = np.sum(references**2, axis=1)
  # The block's [rows, num_references] distances and its [rows, values] differences both stay
  # within _BLOCK_ENTRIES.
  rows_per_block = max(1, _BLOCK_ENTRIES // max(len(references), references.shape[1]))
  index = np.empty(len(queries), np.int64)
  distance = np.empty(len(queries), np.float64)
  for start in range(0, len(queries), rows_per_block):
    block = queries[start : start + rows_per_block]
    rows = slice(start, start + len(block))
    d2 = np.sum(block**2, axis=1)[:, None] - 2 * block @ references.T + reference_norms[None, :]
    if exclude_self:
      d2[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
    index[rows] = np.argmin(d2, axis=1)
    distance[rows] = np.linalg.norm(block - references[index[rows]], axis=1)
  return index, distance


class TrainingSpacing:
  """A training set's distinct images and each one's distance to its nearest other distinct
  image, computed once: scoring many sample sets against one large training set (128,000
  stacked digits: minutes of float64 distances) pays for the spacing once, not per set."""

  def __init__(self, train_images):
    flat_train = _flatten(train_images, "train_images")
    if len(flat_train) < 2:
      raise ValueError(f"need at least 2 training images to measure spacing, got {len(flat_train)}")
    self.image_shape = np.shape(train_images)[1:]
    self.distinct = np.unique(flat_train, axis=0)
    if len(self.distinct) < 2:
      raise ValueError(
        f"train_images has {len(flat_train)} images but they are all identical; need at least "
        "2 distinct training images to measure spacing"
      )
    _, self.spacing = _nearest(self.distinct, self.distinct, exclude_self=True)

  def rate(self, samples, threshold: float = 0.5, return_ratios: bool = False) -> dict:
    """memorization_rate(samples, the training images, threshold, return_ratios)."""
    if not (np.isfinite(threshold) and threshold > 0):
      raise ValueError(f"threshold must be a positive finite number, got {threshold}")
    flat_samples = _flatten(samples, "samples")
    if flat_samples.shape[1] != self.distinct.shape[1]:
      raise ValueError(
        f"samples have {flat_samples.shape[1]} values per image (shape {np.shape(samples)[1:]}) "
        f"but train_images have {self.distinct.shape[1]} (shape {self.image_shape})"
      )
    nearest_train, distance = _nearest(flat_samples, self.distinct, exclude_self=False)
    ratios = distance / self.spacing[nearest_train]
    result = {"rate": float(np.mean(ratios < threshold)), "median_ratio": float(np.median(ratios))}
    if return_ratios:
      result["ratios"] = ratios
    return result


def memorization_rate(
  samples, train_images, threshold: float = 0.5, return_ratios: bool = False
) -> dict:
  """{"rate", "median_ratio"[, "ratios"]} of samples against the training images.

  rate: the fraction of samples with ratio < threshold (strictly: a ratio equal to the
  threshold is not a copy); median_ratio: the median of ratio over the samples; ratios
  (float64[num_samples], only with return_ratios): each sample's ratio.

  samples [M, ...] and train_images [N, ...] may have any image shape; they are flattened and
  must agree in the number of values per image. Computed in float64.

  Duplicate training images: identical training images are merged into one before anything is
  measured, so r(x) is the distance from x to its nearest *non-identical* training image. A
  duplicated image is still one point of the training distribution; letting its duplicate set
  r = 0 would make every sample near it, even an exact copy, a ratio of 0/0 or infinity, and
  so hide exactly the images a generator is most likely to memorize. A training set with fewer
  than two distinct images is rejected: there is no spacing to measure against.

  Near-identical (not bitwise-equal) training images keep their small r, so samples near them
  count as copies only when very close; that is the ratio doing its job.
  """
  if not (np.isfinite(threshold) and threshold > 0):
    raise ValueError(f"threshold must be a positive finite number, got {threshold}")
  _flatten(samples, "samples")  # the samples' errors first, before minutes of spacing
  return TrainingSpacing(train_images).rate(samples, threshold, return_ratios)
