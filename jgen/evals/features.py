"""Distances between sample sets in a feature space: FID, KID, precision/recall, density/coverage.

Features here come from jgen's digit classifier (penultimate layer, per channel), not from
Inception: these are domain metrics, comparable across runs of this codebase and across
codebases that use the same classifier, not with published Inception FIDs. Callers name the
outputs accordingly (`classifier_fid`, ...).

  fid        Frechet distance of Gaussians fitted to the two feature sets (Heusel et al. 2017)
  kid        unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, the mean over
             random subsets (Binkowski et al. 2018)
  precision  fraction of fakes inside some real sample's k-NN ball, k = 3; recall the reverse
             (Kynkaanniemi et al. 2019)
  density    mean over fakes of the number of real k-NN balls containing it, / k; coverage
             the fraction of real samples whose k-NN ball holds a fake, k = 5 (Naeem et al. 2020)
"""

import jax
import jax.numpy as jnp
import numpy as np

PR_K = 3
DC_K = 5


def fid(real_NxF, fake_NxF) -> float:
  """||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2)), in float64.

  tr (S_r S_f)^(1/2) is the sum of the square roots of the eigenvalues of S_r S_f, computed
  where it is cheaper (both exact, equal to rounding; tests/test_images.py compares them):
  in feature space, eig(A S_f A) with A = S_r^(1/2), symmetric PSD, so eigh applies and the
  result is real, unlike a general sqrtm (two F x F eigendecompositions); or, for sets so small
  that N_r N_f <= F^2 (Inception's F = 2048 against a few hundred samples), in sample space:
  with centred samples X_r, X_f, the nonzero eigenvalues of S_r S_f are those of C C^T / c for
  C = X_r X_f^T and c = (N_r - 1)(N_f - 1), so the sum is C's nuclear norm / sqrt(c).
  """
  real, fake = np.asarray(real_NxF, np.float64), np.asarray(fake_NxF, np.float64)
  mu_r, mu_f = real.mean(0), fake.mean(0)
  if len(real) * len(fake) <= real.shape[1] ** 2:
    trace_r, trace_f, trace_sqrt = _fid_traces_in_sample_space(real - mu_r, fake - mu_f)
  else:
    trace_r, trace_f, trace_sqrt = _fid_traces_in_feature_space(real, fake)
  value = np.sum((mu_r - mu_f) ** 2) + trace_r + trace_f - 2 * trace_sqrt
  return float(max(value, 0.0))


def _fid_traces_in_feature_space(real, fake) -> tuple[float, float, float]:
  cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
  eig_r, vec_r = np.linalg.eigh(cov_r)
  sqrt_r = (vec_r * np.sqrt(np.clip(eig_r, 0, None))) @ vec_r.T
  cross = np.linalg.eigvalsh(sqrt_r @ cov_f @ sqrt_r)
  return np.trace(cov_r), np.trace(cov_f), np.sum(np.sqrt(np.clip(cross, 0, None)))


def _fid_traces_in_sample_space(centred_r, centred_f) -> tuple[float, float, float]:
  dof_r, dof_f = len(centred_r) - 1, len(centred_f) - 1
  singular_values = np.linalg.svd(centred_r @ centred_f.T, compute_uv=False)
  trace_sqrt = np.sum(singular_values) / np.sqrt(dof_r * dof_f)
  return np.sum(centred_r**2) / dof_r, np.sum(centred_f**2) / dof_f, trace_sqrt


def kid(
  real_NxF, fake_NxF, subset_size: int = 1000, num_subsets: int = 100, seed: int = 0
) -> tuple[float, float]:
  """(mean, std) over subsets of the unbiased MMD^2 estimate; subsets drawn with `seed`."""
  real, fake = np.asarray(real_NxF, np.float64), np.asarray(fake_NxF, np.float64)
  m = min(subset_size, len(real), len(fake))
  if m < 2:
    raise ValueError(f"KID needs at least 2 samples per set, got {len(real)} and {len(fake)}")
  rng = np.random.default_rng(seed)
  x = np.stack([real[rng.choice(len(real), m, replace=False)] for _ in range(num_subsets)])
  y = np.stack([fake[rng.choice(len(fake), m, replace=False)] for _ in range(num_subsets)])
  values = np.asarray(_mmd2_subsets(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)))
  return float(np.mean(values)), float(np.std(values))


@jax.jit
def _mmd2_subsets(x_TxMxF, y_TxMxF):
  # lax.map, not vmap: one subset's three [M, M] kernels at a time.
  return jax.lax.map(lambda xy: _mmd2_unbiased(*xy), (x_TxMxF, y_TxMxF))


def _mmd2_unbiased(x_MxF, y_MxF):
  m, dim = x_MxF.shape

  def kernel(a, b):
    return (jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST) / dim + 1) ** 3

  k_xx, k_yy, k_xy = kernel(x_MxF, x_MxF), kernel(y_MxF, y_MxF), kernel(x_MxF, y_MxF)
  off = m * (m - 1)
  within = (k_xx.sum() - jnp.trace(k_xx)) / off + (k_yy.sum() - jnp.trace(k_yy)) / off
  return within - 2 * k_xy.mean()


@jax.jit
def squared_distances(a_NxF, b_MxF):
  # The expanded form is one matmul (the subtracted form would hold an [N, M, F] tensor); it can
  # be off by rounding, so it is clipped at 0. k-NN radii (k >= 1) are far above that rounding.
  cross = jnp.matmul(a_NxF, b_MxF.T, precision=jax.lax.Precision.HIGHEST)
  d2 = jnp.sum(a_NxF**2, -1)[:, None] + jnp.sum(b_MxF**2, -1)[None, :] - 2 * cross
  return jnp.maximum(d2, 0.0)


def chunked_squared_distances(a_NxF, b_MxF, chunk: int = 2048) -> np.ndarray:
  a, b = jnp.asarray(a_NxF, jnp.float32), jnp.asarray(b_MxF, jnp.float32)
  pieces = [np.asarray(squared_distances(a[i : i + chunk], b)) for i in range(0, len(a), chunk)]
  return np.concatenate(pieces)


def _kth_neighbour_radius(x_NxF, k: int) -> np.ndarray:
  """Squared distance from each point to its k-th nearest other point of the same set."""
  d2 = chunked_squared_distances(x_NxF, x_NxF)
  # Column 0 of the sorted row is the point itself (distance 0), so index k is the k-th other.
  return np.partition(d2, k, axis=1)[:, k]


def precision_recall(real_NxF, fake_MxF, k: int = PR_K) -> tuple[float, float]:
  """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls."""
  radius_real, radius_fake = _kth_neighbour_radius(real_NxF, k), _kth_neighbour_radius(fake_MxF, k)
  d2_fake_real = chunked_squared_distances(fake_MxF, real_NxF)
  precision = np.mean(np.any(d2_fake_real <= radius_real[None, :], axis=1))
  recall = np.mean(np.any(d2_fake_real.T <= radius_fake[None, :], axis=1))
  return float(precision), float(recall)


def density_coverage(real_NxF, fake_MxF, k: int = DC_K) -> tuple[float, float]:
  """Density and coverage (Naeem et al. 2020) with the real samples' k-NN balls."""
  radius_real = _kth_neighbour_radius(real_NxF, k)
  inside_MxN = chunked_squared_distances(fake_MxF, real_NxF) <= radius_real[None, :]
  density = inside_MxN.sum() / (k * inside_MxN.shape[0])
  coverage = np.mean(inside_MxN.any(axis=0))
  return float(density), float(coverage)
