"""Stacked digits: three digits as the three channels of one image, 1,000 modes.

The VEEGAN / PacGAN Stacked-MNIST protocol, offline on scikit-learn's 8x8 digits
(`jgen.data.digits`): a sample stacks three digits drawn independently and uniformly from the
1,797, one per channel, so its mode is the label triple (100 l0 + 10 l1 + l2), one of 1,000.
The training set is a fixed, seeded list of 128,000 index triples (int32 [N, 3]); images are
gathered from the triples inside the jitted step, so the device holds 1.5 MB, not 98 MB.

The same construction over another source of digits (TFDS MNIST) is `stacked_mnist`.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jgen.data import digits

NUM_CHANNELS = 3
NUM_MODES = 10**NUM_CHANNELS
PROTOCOL_NUM_TRAIN = 128_000  # VEEGAN / PacGAN
PROTOCOL_NUM_SAMPLES = 26_000  # generated samples per evaluation (VEEGAN / PacGAN)


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class StackedDigits:
  """Image data whose training set is index triples into `digits_NxHxW` (on the device)."""

  name: str
  digits_NxHxW: np.ndarray  # float32 in [0, 1] (or uint8, scaled by 1/255 when gathered)
  labels_N: np.ndarray
  # The recipe of the digit classifier that labels each channel (jgen/evals/digit_classifier.py
  # RECIPES), and the TFDS data directory it reads for MNIST.
  classifier: str = "sklearn_digits"
  classifier_data_dir: str | None = None

  @property
  def sample_shape(self) -> tuple[int, int, int]:
    return (*self.digits_NxHxW.shape[1:], NUM_CHANNELS)

  @property
  def num_modes(self) -> int:
    return NUM_MODES

  def training_set(self, key: jax.Array, num_train: int) -> dict:
    """{'triples': int32 [num_train, 3] uniform over the digits, 'digits': the source}."""
    triples = jax.random.randint(key, (num_train, NUM_CHANNELS), 0, len(self.labels_N))
    return {"triples": triples.astype(jnp.int32), "digits": jnp.asarray(self.digits_NxHxW)}

  def gather(self, data: dict, indices_B: jax.Array) -> jax.Array:
    """The images of training examples `indices_B`: float32 [B, H, W, 3] in [0, 1]."""
    x_Bx3xHxW = data["digits"][data["triples"][indices_B]]
    if x_Bx3xHxW.dtype == jnp.uint8:
      x_Bx3xHxW = x_Bx3xHxW.astype(jnp.float32) / 255.0
    return jnp.moveaxis(x_Bx3xHxW, 1, -1).astype(jnp.float32)

  def mode_distribution(self) -> np.ndarray:
    """p_data over the 1,000 modes: the product of the class frequencies (float64 [1000]).

    Digits are drawn uniformly, and the classes are not exactly balanced (174 to 183 each in
    scikit-learn's digits), so this is close to but not exactly uniform.
    """
    class_p = np.bincount(self.labels_N, minlength=10) / len(self.labels_N)
    return functools.reduce(np.multiply.outer, [class_p] * NUM_CHANNELS).reshape(-1)


def mode_of_labels(labels_NxC: jax.Array) -> jax.Array:
  """The mode index sum_c labels[:, c] * 10^(C-1-c): channel 0 is the hundreds digit."""
  weights = 10 ** jnp.arange(labels_NxC.shape[-1] - 1, -1, -1, dtype=jnp.int32)
  return jnp.sum(labels_NxC.astype(jnp.int32) * weights, axis=-1)


def stacked_digits() -> StackedDigits:
  images, labels = digits.load_digits()
  return StackedDigits("stacked_digits", np.asarray(images[..., 0]), np.asarray(labels))
