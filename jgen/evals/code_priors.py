"""Priors over a DGN/GLO generator's learned codes: new images are G(z) with z drawn from one.

  gaussian  one full-covariance Gaussian fitted to the codes
  gmm       a Gaussian mixture fitted to the codes (option: components)
  knn       a random convex combination of a code and its k nearest codes (option: k)
  slerp     a random point on the great-circle arc between two random codes

The fitted densities put mass wherever the codes' covariance spreads it, including between
clusters where G was never trained; knn and slerp stay near the codes G has seen, at the price
of producing nothing outside their hull. `sample_codes(kind, ...)` chooses among them by name.
"""

import inspect

import numpy as np

from jgen.core import registry


def lerp(z0, z1, t):
  return (1.0 - t) * z0 + t * z1


def slerp(z0, z1, t):
  """Spherical interpolation along the last axis; leading axes of z0, z1 and t broadcast.

  Falls back to lerp where the great circle is undefined: (nearly) parallel or antipodal codes,
  or a zero code.
  """
  z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
  t = np.asarray(t, np.float64)[..., None]
  n0 = np.linalg.norm(z0, axis=-1, keepdims=True)
  n1 = np.linalg.norm(z1, axis=-1, keepdims=True)
  degenerate_norm = (n0 == 0) | (n1 == 0)
  # Dividing by 1 where a norm is 0 keeps the arithmetic finite; those rows take lerp below.
  cos = np.sum(z0 / np.where(n0 == 0, 1, n0) * (z1 / np.where(n1 == 0, 1, n1)), -1, keepdims=True)
  omega = np.arccos(np.clip(cos, -1.0, 1.0))
  sin_omega = np.sin(omega)
  use_lerp = degenerate_norm | (omega < 1e-6) | (omega > np.pi - 1e-6)
  safe_sin = np.where(use_lerp, 1.0, sin_omega)
  arc = (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / safe_sin
  return np.where(use_lerp, lerp(z0, z1, t), arc)


def _codes_matrix(codes, min_codes: int) -> np.ndarray:
  codes = np.asarray(codes, np.float64)
  if codes.ndim != 2:
    raise ValueError(f"codes must be a [num_codes, z_dim] array, got shape {codes.shape}")
  if len(codes) < min_codes:
    raise ValueError(f"need at least {min_codes} codes, got {len(codes)}")
  if not np.all(np.isfinite(codes)):
    raise ValueError("codes contain NaN or infinity")
  return codes


def _check_num_samples(num_samples: int) -> None:
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}")


_FITTED_KINDS = ("gaussian", "gmm")


def fit_and_sample(latents, kind: str, num_samples: int, components: int, seed: int):
  """Codes drawn from a Gaussian (full covariance) or a GMM fitted to the learned codes."""
  from sklearn.mixture import GaussianMixture

  registry.choose("fitted density", kind, dict.fromkeys(_FITTED_KINDS))
  latents = _codes_matrix(latents, min_codes=2)
  _check_num_samples(num_samples)
  components = 1 if kind == "gaussian" else min(components, len(latents))
  model = GaussianMixture(components, covariance_type="full", reg_covar=1e-5, random_state=seed)
  model.fit(latents)
  model.random_state = seed  # sample() draws from the estimator's random_state
  codes, _ = model.sample(num_samples)
  return np.asarray(codes, np.float32)


# Anchors per distance block: a block is [rows, num_codes] float64, so ~32 MB at 4M entries,
# which keeps the neighbour search cheap in memory for any number of codes.
_BLOCK_ENTRIES = 4_000_000


def knn_convex(codes_NxZ, num_samples: int, k: int, seed: int) -> np.ndarray:
  """float32[num_samples, z_dim]: each a convex combination of a code and its k nearest codes.

  Each sample picks an anchor code uniformly, takes it and its k nearest other codes
  (Euclidean; the anchor's own index is excluded, an identical copy of it is not), and mixes
  those k + 1 codes with Dirichlet(1, ..., 1) weights: uniform over their simplex, so every
  sample lies in their convex hull. Deterministic given seed (numpy default_rng).
  """
  codes = _codes_matrix(codes_NxZ, min_codes=2)
  n = len(codes)
  if not 1 <= k < n:
    raise ValueError(f"k must satisfy 1 <= k < number of codes ({n}), got k={k}")
  _check_num_samples(num_samples)
  rng = np.random.default_rng(seed)
  anchors = rng.integers(n, size=num_samples)
  weights = rng.dirichlet(np.ones(k + 1), size=num_samples)

  # Neighbours only of the anchors drawn: a full [N, N] distance matrix would not fit for
  # tens of thousands of codes.
  unique_anchors, anchor_row = np.unique(anchors, return_inverse=True)
  neighbours = np.empty((len(unique_anchors), k), np.int64)
  squared_norms = np.sum(codes**2, axis=1)
  rows_per_block = max(1, _BLOCK_ENTRIES // n)
  for start in range(0, len(unique_anchors), rows_per_block):
    block = unique_anchors[start : start + rows_per_block]
    d2 = squared_norms[block, None] - 2 * codes[block] @ codes.T + squared_norms[None, :]
    d2[np.arange(len(block)), block] = np.inf
    neighbours[start : start + len(block)] = np.argpartition(d2, k - 1, axis=1)[:, :k]
  members = np.concatenate([anchors[:, None], neighbours[anchor_row]], axis=1)
  return np.einsum("sm,smz->sz", weights, codes[members]).astype(np.float32)


def slerp_pairs(codes_NxZ, num_samples: int, seed: int) -> np.ndarray:
  """float32[num_samples, z_dim]: slerp(z_i, z_j, t) for random i != j and t ~ U(0, 1).

  Codes of equal norm give samples of that norm (on the arc between them). Deterministic
  given seed (numpy default_rng).
  """
  codes = _codes_matrix(codes_NxZ, min_codes=2)
  _check_num_samples(num_samples)
  n = len(codes)
  rng = np.random.default_rng(seed)
  first = rng.integers(n, size=num_samples)
  # An offset in 1 .. n-1 makes the second index uniform over the codes other than the first.
  second = (first + rng.integers(1, n, size=num_samples)) % n
  t = rng.uniform(0.0, 1.0, size=num_samples)
  return slerp(codes[first], codes[second], t).astype(np.float32)


def _gaussian(codes, num_samples: int, seed: int):
  return fit_and_sample(codes, "gaussian", num_samples, 1, seed)


def _gmm(codes, num_samples: int, seed: int, components: int = 10):
  # 10 components: configs/dgn.py's eval.gmm_components.
  return fit_and_sample(codes, "gmm", num_samples, components, seed)


def _knn(codes, num_samples: int, seed: int, k: int = 5):
  return knn_convex(codes, num_samples, k, seed)


def _slerp(codes, num_samples: int, seed: int):
  return slerp_pairs(codes, num_samples, seed)


CODE_PRIORS = {"gaussian": _gaussian, "gmm": _gmm, "knn": _knn, "slerp": _slerp}


def sample_codes(kind: str, codes, num_samples: int, seed: int, **options) -> np.ndarray:
  """float32[num_samples, z_dim] from the prior `kind` (a CODE_PRIORS name) over `codes`.

  options: components for gmm (default 10), k for knn (default 5); none for the others.
  """
  prior = registry.choose("code prior", kind, CODE_PRIORS)
  accepted = list(inspect.signature(prior).parameters)[3:]
  unknown = sorted(set(options) - set(accepted))
  if unknown:
    takes = ", ".join(accepted) or "no options"
    raise ValueError(f"code prior {kind!r} does not take {', '.join(unknown)}; it takes {takes}")
  return prior(codes, num_samples, seed, **options)
