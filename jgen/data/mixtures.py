"""The 2D Gaussian mixtures of the PacGAN / VEEGAN mode-collapse protocol.

ring8: 8 Gaussians on the unit circle, sigma 0.01.
grid25: 25 Gaussians at {-4,-2,0,2,4}^2, sigma 0.05.
Both are equally weighted; every component has an isotropic covariance.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jgen.core import registry


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class Mixture:
  name: str
  means_Kx2: np.ndarray
  sigma: float

  @property
  def num_modes(self) -> int:
    return self.means_Kx2.shape[0]

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """n i.i.d. draws, float32[n, 2]."""
    component_key, noise_key = jax.random.split(key)
    components = jax.random.randint(component_key, (n,), 0, self.num_modes)
    noise = jax.random.normal(noise_key, (n, 2), jnp.float32)
    return jnp.asarray(self.means_Kx2, jnp.float32)[components] + self.sigma * noise

  def sample_balanced(self, key: jax.Array, n: int) -> jax.Array:
    """n draws, point i from component i mod K: every mode equally often (n a multiple of K)."""
    if n % self.num_modes:
      raise ValueError(
        f"data.balanced needs data.num_train to be a multiple of the {self.num_modes} modes of "
        f"{self.name}, got {n}"
      )
    components = jnp.arange(n) % self.num_modes
    noise = jax.random.normal(key, (n, 2), jnp.float32)
    return jnp.asarray(self.means_Kx2, jnp.float32)[components] + self.sigma * noise


def _ring8() -> Mixture:
  angles = 2 * np.pi * np.arange(8) / 8
  return Mixture("ring8", np.stack([np.cos(angles), np.sin(angles)], 1), sigma=0.01)


def _grid25() -> Mixture:
  axis = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
  means = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
  return Mixture("grid25", means, sigma=0.05)


MIXTURES = {"ring8": _ring8, "grid25": _grid25}


def get_mixture(name: str) -> Mixture:
  """The one Mixture of each name in a process: as a static jit argument (hashed by identity),
  it lets every run of the process reuse the programs compiled for it (mode metrics)."""
  return _the_mixture(registry.choose("data", name, MIXTURES))


@functools.cache
def _the_mixture(make) -> Mixture:
  mixture = make()
  mixture.means_Kx2.setflags(write=False)  # shared by every caller
  return mixture
