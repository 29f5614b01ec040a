"""The handwritten digits that ship inside scikit-learn: offline image data.

`sklearn.datasets.load_digits` holds 1,797 8x8 grey images with integer values 0..16 (UCI
optdigits, about 180 per class). Divided by 16 they are float images in [0, 1].
"""

import functools

import numpy as np

NUM_CLASSES = 10
# Digits HELD_OUT_START..1796 are never trained on: the held-out reference of the single-digit
# generators (jgen/data/single_digits.py, the DGN) and the inverse problems' held-out images.
HELD_OUT_START = 1500


@functools.cache
def _load() -> tuple[np.ndarray, np.ndarray]:
  from sklearn import datasets  # scikit-learn imports slowly; only when digits are asked for

  bunch = datasets.load_digits()
  images = (bunch.images.astype(np.float32) / 16.0)[..., None]
  labels = bunch.target.astype(np.int32)
  images.setflags(write=False)
  labels.setflags(write=False)
  return images, labels


def load_digits() -> tuple[np.ndarray, np.ndarray]:
  """(images float32[1797, 8, 8, 1] in [0, 1], labels int32[1797]); read-only arrays."""
  return _load()


def split(num_examples: int, held_out_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """A seeded (train, held-out) split of range(num_examples), stratification-free."""
  order = np.random.default_rng(seed).permutation(num_examples)
  num_held_out = round(num_examples * held_out_fraction)
  return np.sort(order[num_held_out:]), np.sort(order[:num_held_out])
