"""2D Gaussian mixtures as a dataset: PacGAN's mode metrics and a scatter picture."""

import dataclasses
import functools

import jax
import numpy as np

from jgen.data import mixtures
from jgen.data.mixtures import Mixture
from jgen.evals import diversity, modes
from jgen.viz import plots

CURVES = ("modes", "high_quality", "reverse_kl", "diversity", "d_loss", "g_loss")


@functools.partial(jax.jit, static_argnums=1)
def _metrics(samples_Nx2, mixture: Mixture):
  return {
    **modes.mode_metrics(samples_Nx2, mixture),
    "diversity": diversity.mean_pairwise_distance(samples_Nx2),
  }


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: part of static jit args
class MixtureData:
  mixture: Mixture
  sample_shape: tuple = (2,)
  on_host: bool = False
  curves: tuple = CURVES
  balanced: bool = False  # the fixed training set holds every mode equally often

  @classmethod
  def from_config(cls, data_config) -> "MixtureData":
    balanced = data_config.get("balanced", False)
    if balanced and data_config.get("fresh_samples", False):
      raise ValueError("data.balanced fixes the training set; set data.fresh_samples=False")
    mixture = mixtures.get_mixture(data_config.name)
    if balanced and data_config.num_train % mixture.num_modes:
      raise ValueError(
        f"data.balanced needs data.num_train to be a multiple of the {mixture.num_modes} modes "
        f"of {mixture.name}, got {data_config.num_train}"
      )
    return cls(mixture, balanced=balanced)

  @property
  def name(self) -> str:
    return self.mixture.name

  @property
  def num_modes(self) -> int:
    return self.mixture.num_modes

  def training_set(self, key: jax.Array, num_train: int) -> jax.Array:
    """PacGAN's fixed training set: `num_train` i.i.d. points, float32 [N, 2] (balanced: point
    i from mode i mod K)."""
    if self.balanced:
      return self.mixture.sample_balanced(key, num_train)
    return self.mixture.sample(key, num_train)

  def fresh_batch(self, key: jax.Array, batch_size: int) -> jax.Array:
    """New i.i.d. points each step (the Unrolled-GAN protocol, `data.fresh_samples`)."""
    return self.mixture.sample(key, batch_size)

  def gather(self, train_set: jax.Array, indices_B: jax.Array) -> jax.Array:
    return train_set[indices_B]

  def evaluate(self, samples_Nx2: np.ndarray, eval_config) -> dict:
    """PacGAN's modes, high-quality fraction, reverse KL, per-mode counts; and diversity."""
    del eval_config
    return modes.to_json_row(jax.device_get(_metrics(samples_Nx2, self.mixture)))

  def picture(self, path: str, samples, title: str, row: dict | None) -> None:
    plots.scatter_samples(path, samples, self.mixture, title=title, metrics=row)

  def side_by_side(self, path: str, rows, row_titles, title: str) -> None:
    """Nothing: points of several branches overlap in one scatter; each branch's final
    picture shows them."""

  def progress_text(self, row: dict) -> str:
    kl = row["reverse_kl"]
    # Reverse KL is undefined while no sample is of high quality (no mode captured).
    kl_text = "– (undefined: no sample near any mode yet)" if kl is None else f"{kl:.4f}"
    return (
      f"modes {row['modes']}/{self.num_modes} high_quality {row['high_quality']:.3f} "
      f"reverse_kl {kl_text}"
    )
