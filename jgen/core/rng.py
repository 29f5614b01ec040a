"""Named PRNG streams: every random draw is fold_in(fold_in(root, STREAM), step).

A run has one root key (from `config.seed`). Each kind of randomness gets its
own stream so that, e.g., changing how z is drawn never changes the data order,
and any step's randomness can be recomputed without replaying history. This is
why a checkpoint needs no key: the step number is the whole key state.
"""

import enum

import jax


class Stream(enum.IntEnum):
  """Stream ids. Append new streams; never renumber (it would change old runs)."""

  DATA_INDICES = 1  # which training examples a step sees (the samplers)
  STREAK = 2  # streak renewals of the `streak` sampler
  Z = 3  # generator noise for the training step
  PACKING = 4  # assignment of samples to the sets a set discriminator sees
  INIT_G = 5
  INIT_D = 6
  EVAL = 7  # the fixed z used at every evaluation
  TRAIN_SET = 8  # the fixed training set drawn from the mixture
  FRESH_DATA = 9  # per-step fresh draws (the Unrolled-GAN protocol)
  PENALTY = 10  # interpolation weights of gradient penalties
  NOISE_LEVEL = 11  # the time / noise level of each training example of a denoiser
  SOURCE_NOISE = 12  # the Gaussian source (flow matching) or added noise (noise prediction)
  SAMPLING_NOISE = 13  # fresh noise of ancestral sampling at an evaluation


def root_key(seed: int) -> jax.Array:
  return jax.random.key(seed)


def stream_key(root: jax.Array, stream: Stream) -> jax.Array:
  return jax.random.fold_in(root, int(stream))


def step_key(root: jax.Array, stream: Stream, step) -> jax.Array:
  """The key of `stream` at `step` (step may be a traced int)."""
  return jax.random.fold_in(stream_key(root, stream), step)
