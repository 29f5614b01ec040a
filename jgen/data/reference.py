"""Real reference images: what generated images are compared with at every evaluation."""

import jax
import jax.numpy as jnp
import numpy as np

from jgen.core import rng
from jgen.data import tfds_source

# The real reference set is drawn from the data distribution with its own key (a fold of the
# EVAL stream), not taken from the training set: it is the same for every seed's run.
REFERENCE_SEED = 0


def reference_images(source, num: int) -> np.ndarray:
  """`num` real images of an image source (stacked digits or TFDS), float32 in [0, 1] (host);
  a source that holds images out (single digits) gives those.

  Data read on the host gives its first `num` records, scaled as the trainer scales them.
  """
  if hasattr(source, "reference_images"):  # a source with its own held-out images
    return source.reference_images(num)
  if getattr(source, "on_host", False):
    records = np.stack([source.read(i) for i in range(min(num, source.num_examples))])
    return np.asarray(tfds_source.to_float(records))
  key = jax.random.fold_in(jax.random.key(REFERENCE_SEED), int(rng.Stream.EVAL))
  reference = source.training_set(key, num)
  return np.asarray(jax.device_get(source.gather(reference, jnp.arange(num))))
