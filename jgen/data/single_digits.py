"""Single 8x8 digits as image data for every generator family, with a held-out reference.

The DGN reconstructs the first `num_train` of scikit-learn's 1,797 digits (at most 1,500);
digits 1500..1796 are never trained on. This source gives the GANs and the flows the same
training images, so that every family is trained on the same data and scored against the same
held-out digits:

- `training_set` is the first `num_train` digits, each once (no random draw: the key is not
  read), float32 [num_train, 8, 8, 1] on the device, as the DGN holds them; `gather` picks a
  batch by index.
- `reference_images(num)` are the held-out digits (297 of them; fewer than `num` when `num`
  is larger): the classifier-feature Frechet distance and precision/recall compare samples
  with digits no generator saw, so a generator that replays its training set does not win.
- The 10 classes are the modes; `mode_distribution` is the class frequencies of the training
  digits, the histogram a generator of that data should match.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jgen.data import digits


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class SingleDigits:
  name: str
  images_NxHxWx1: np.ndarray  # every digit, float32 in [0, 1]
  labels_N: np.ndarray
  classifier: str = "sklearn_digits"  # jgen/evals/digit_classifier.py RECIPES
  classifier_data_dir: str | None = None

  @property
  def sample_shape(self) -> tuple[int, int, int]:
    return tuple(self.images_NxHxWx1.shape[1:])

  @property
  def num_modes(self) -> int:
    return digits.NUM_CLASSES

  def training_set(self, key: jax.Array, num_train: int) -> jax.Array:
    del key  # the first num_train digits: the same set for every seed and every family
    if not 1 <= num_train <= digits.HELD_OUT_START:
      raise ValueError(
        f"data.num_train must be in [1, {digits.HELD_OUT_START}] for {self.name} (digits from "
        f"{digits.HELD_OUT_START} on are held out), got {num_train}"
      )
    return jnp.asarray(self.images_NxHxWx1[:num_train])

  def gather(self, images_NxHxWx1: jax.Array, indices_B: jax.Array) -> jax.Array:
    return images_NxHxWx1[indices_B]

  def training_images(self, num_train: int) -> np.ndarray:
    return np.asarray(self.images_NxHxWx1[:num_train])

  def reference_images(self, num: int) -> np.ndarray:
    """The first min(num, 297) held-out digits (digits 1500..1796)."""
    return np.asarray(self.images_NxHxWx1[digits.HELD_OUT_START :][:num])

  def mode_distribution(self) -> np.ndarray:
    counts = np.bincount(self.labels_N[: digits.HELD_OUT_START], minlength=digits.NUM_CLASSES)
    return counts / counts.sum()


def single_digits() -> SingleDigits:
  images, labels = digits.load_digits()
  return SingleDigits("digits", np.asarray(images), np.asarray(labels))
