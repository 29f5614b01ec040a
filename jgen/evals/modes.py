"""Mode coverage of 2D samples, pinned to the PacGAN (Lin et al. 2018) MetricLogger.

Each sample is assigned to its nearest mode by Mahalanobis distance (isotropic
here: ||x - mu|| / sigma) and is *high quality* when that distance is below 3.
  mode_counts[k]  high-quality samples whose nearest mode is k
  modes           number of k with mode_counts[k] > 0
  high_quality    sum(mode_counts) / n
  reverse_kl      KL(p || uniform) in nats, p = mode_counts / sum(mode_counts);
                  NaN (JSON null) when no sample is high quality.
The published protocol evaluates 2,500 samples; the functions accept any n.
These definitions are what makes numbers comparable with the papers: do not change them.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jgen.data.mixtures import Mixture

HIGH_QUALITY_SIGMAS = 3.0
PROTOCOL_NUM_SAMPLES = 2500


def nearest_mode(samples_Nx2: jax.Array, mixture: Mixture) -> tuple[jax.Array, jax.Array]:
  """Returns (index int32[n], distance in sigmas float32[n]) of each sample's nearest mode."""
  x_Nx2 = jnp.asarray(samples_Nx2, jnp.float32)
  means_Kx2 = jnp.asarray(mixture.means_Kx2, jnp.float32)
  n = x_Nx2.shape[0]

  # A scan over the K modes keeps memory at O(n) for n ~ 1e6, and subtracting before squaring
  # (instead of expanding ||x||^2 - 2x.mu + ||mu||^2) keeps the 3-sigma test accurate in float32.
  def visit(carry, mode):
    best_d2, best_k = carry
    k, mean_2 = mode
    d2 = jnp.sum(jnp.square(x_Nx2 - mean_2), axis=-1)
    closer = d2 < best_d2  # strict: ties go to the lowest index, as argmin would
    return (jnp.where(closer, d2, best_d2), jnp.where(closer, k, best_k)), None

  init = (jnp.full((n,), jnp.inf, jnp.float32), jnp.zeros((n,), jnp.int32))
  modes = (jnp.arange(mixture.num_modes, dtype=jnp.int32), means_Kx2)
  (best_d2, best_k), _ = lax.scan(visit, init, modes)
  return best_k, jnp.sqrt(best_d2) / jnp.float32(mixture.sigma)


def mode_metrics(samples_Nx2: jax.Array, mixture: Mixture) -> dict[str, jax.Array]:
  """PacGAN mode metrics of samples float[n, 2]; jittable with `mixture` closed over.

  Returns {'modes': int32[], 'high_quality': float32[], 'reverse_kl': float32[],
  'mode_counts': int32[K]}.
  """
  index_N, distance_N = nearest_mode(samples_Nx2, mixture)
  is_high_quality_N = (distance_N < HIGH_QUALITY_SIGMAS).astype(jnp.int32)
  mode_counts_K = jnp.zeros(mixture.num_modes, jnp.int32).at[index_N].add(is_high_quality_N)
  total = jnp.sum(mode_counts_K)
  p_K = mode_counts_K.astype(jnp.float32) / jnp.maximum(total, 1).astype(jnp.float32)
  # sum p log(pK) rather than log K - H(p): a uniform histogram then gives exactly 0.
  safe_p_K = jnp.where(p_K > 0, p_K, 1.0)
  terms_K = jnp.where(p_K > 0, p_K * jnp.log(safe_p_K * mixture.num_modes), 0.0)
  reverse_kl = jnp.where(total > 0, jnp.sum(terms_K), jnp.nan)
  return {
    "modes": jnp.sum(mode_counts_K > 0).astype(jnp.int32),
    "high_quality": (total / index_N.shape[0]).astype(jnp.float32),
    "reverse_kl": reverse_kl.astype(jnp.float32),
    "mode_counts": mode_counts_K,
  }


def _json_float(x: np.floating) -> float | None:
  # str() of a float32 is its shortest round-tripping decimal: 0.97, not 0.9700000286102295.
  return float(str(x)) if np.isfinite(x) else None


def _json_value(value):
  array = np.asarray(value)
  if array.dtype.kind != "f":
    return array.tolist()
  if array.ndim == 0:
    return _json_float(array[()])
  flat = [_json_float(x) for x in array.ravel()]
  return np.array(flat, dtype=object).reshape(array.shape).tolist()


def to_json_row(metrics: dict) -> dict:
  """Python scalars and lists for json.dumps; NaN/inf become None (JSON null)."""
  return {key: _json_value(value) for key, value in metrics.items()}
