"""Sample diversity: a collapse detector's reading that needs no mixture."""

import jax
import jax.numpy as jnp


def mean_pairwise_distance(x_NxD: jax.Array, max_points: int = 256) -> jax.Array:
  """Mean Euclidean distance over distinct pairs of the first `max_points` samples.

  Falls towards 0 as a generator collapses onto fewer points. Evaluated on a
  fixed-z batch, so changes come from G alone.
  """
  x = x_NxD[:max_points].astype(jnp.float32)
  n = x.shape[0]
  squared = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
  # sqrt(0) on the diagonal has an infinite gradient; mask before the root.
  off_diagonal = ~jnp.eye(n, dtype=bool)
  distances = jnp.sqrt(jnp.where(off_diagonal, squared, 1.0))
  return jnp.sum(jnp.where(off_diagonal, distances, 0.0)) / (n * (n - 1))
