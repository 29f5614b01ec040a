"""A table of learned codes as a dataset: what a prior over a DGN's codes is trained on.

`data.name = "codes"` reads float32 [N, z_dim] from `data.path` (an .npy file a DGN run wrote,
jgen/trainers/dgn.py): the denoising trainer then learns a flow over the codes (GLANN's idea,
Hoshen et al. 2019: first a generator that reconstructs every image, then a generative model of
its codes), and G turns the flow's samples into images. The codes have no modes; an evaluation
reports how far samples lie from the nearest code and how spread they are.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from jgen.evals import diversity

CURVES = ("nearest_code_distance", "diversity")


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: part of static jit args
class CodesData:
  codes: np.ndarray  # float32 [N, z_dim]
  path: str
  on_host: bool = False
  curves: tuple = CURVES
  num_modes: int = 0
  name: str = "codes"

  @classmethod
  def from_config(cls, data_config) -> "CodesData":
    path = data_config.get("path", "")
    if not path or not os.path.exists(path):
      raise ValueError(
        f"data.name='codes' reads a float32 [N, z_dim] table from data.path, got {path!r}: "
        "give the codes.npy a DGN run wrote (eval.priors including 'flow')"
      )
    codes = np.load(path)
    if codes.ndim != 2 or not np.isfinite(codes).all():
      raise ValueError(f"{path} must hold finite codes of shape [N, z_dim], got {codes.shape}")
    if data_config.num_train != len(codes):
      raise ValueError(
        f"data.num_train={data_config.num_train} must equal the {len(codes)} codes in {path}"
      )
    return cls(codes.astype(np.float32), path)

  @property
  def sample_shape(self) -> tuple:
    return (self.codes.shape[1],)

  def training_set(self, key: jax.Array, num_train: int) -> jax.Array:
    del key  # the codes are the data: no draw
    return jnp.asarray(self.codes[:num_train])

  def gather(self, train_set: jax.Array, indices_B: jax.Array) -> jax.Array:
    return train_set[indices_B]

  def evaluate(self, samples_NxZ: np.ndarray, eval_config) -> dict:
    """The mean distance of a sample to its nearest code, and the samples' mean pairwise
    distance (a prior that returns the codes themselves scores 0 on the first)."""
    del eval_config
    samples = np.asarray(samples_NxZ, np.float64)
    squared = (
      np.sum(samples**2, 1)[:, None]
      - 2 * samples @ self.codes.T.astype(np.float64)
      + np.sum(self.codes.astype(np.float64) ** 2, 1)[None, :]
    )
    nearest = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
    spread = float(diversity.mean_pairwise_distance(jnp.asarray(samples_NxZ)))
    return {"nearest_code_distance": float(nearest.mean()), "diversity": spread}

  def picture(self, path: str, samples, title: str, row: dict | None) -> None:
    """Nothing: codes live in z_dim dimensions; the DGN run draws G's images of them."""

  def side_by_side(self, path: str, rows, row_titles, title: str) -> None:
    """Nothing, as `picture`."""

  def progress_text(self, row: dict) -> str:
    return f"nearest code {row['nearest_code_distance']:.4f} diversity {row['diversity']:.4f}"
