"""How different two sampling orders really are, measured from their index streams.

A study of whether the order causes collapse first has to show that its orders differ in what
the model sees. Three readings of a stream of batches (steps x B indices into N examples):

  repeat_fraction   the fraction of steps whose batch shares an example with the previous batch
                    (epoch shuffling: only at an epoch boundary; with replacement: about
                    1 - (1 - B/N)^B; a streak: every step inside a streak);
  gaps              the number of steps between two draws of the same example (0: twice in one
                    batch), as quantiles and the fractions at 0 and 1;
  mode_mix          the variance across batches of each mode's share of a batch, averaged over
                    the modes, beside the multinomial variance p(1-p)/B of i.i.d. batches (their
                    ratio: < 1 for orders that balance the modes, > 1 for streaks).

Pure numpy over a finished stream: `jgen.indices --order_stats` prints them for any config.
"""

import itertools

import numpy as np

from jgen.core import rng
from jgen.data import mixtures

GAP_QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)


def repeat_fraction(indices_SxB: np.ndarray) -> float:
  """The fraction of steps t >= 1 whose batch shares at least one example with step t - 1."""
  indices_SxB = np.asarray(indices_SxB)
  if len(indices_SxB) < 2:
    raise ValueError("a repeat fraction needs at least 2 steps")
  shared = [
    np.intersect1d(previous, current).size > 0
    for previous, current in itertools.pairwise(indices_SxB)
  ]
  return float(np.mean(shared))


def gaps(indices_SxB: np.ndarray) -> np.ndarray:
  """Steps between consecutive draws of the same example, over the whole stream (int64)."""
  indices_SxB = np.asarray(indices_SxB)
  steps, batch = indices_SxB.shape
  flat = indices_SxB.reshape(-1)
  step_of = np.repeat(np.arange(steps), batch)
  # Stable sort by example keeps each example's draws in time order.
  order = np.argsort(flat, kind="stable")
  same = flat[order][1:] == flat[order][:-1]
  return (step_of[order][1:] - step_of[order][:-1])[same].astype(np.int64)


def gap_summary(gaps_G: np.ndarray) -> dict:
  if gaps_G.size == 0:
    return {"count": 0}
  return {
    "count": int(gaps_G.size),
    "fraction_0": float(np.mean(gaps_G == 0)),
    "fraction_1": float(np.mean(gaps_G == 1)),
    "mean": float(gaps_G.mean()),
    **{f"q{round(q * 100):02d}": float(np.quantile(gaps_G, q)) for q in GAP_QUANTILES},
  }


def mode_mix(indices_SxB: np.ndarray, labels_N: np.ndarray, num_modes: int) -> dict:
  """The variance across batches of each mode's share of a batch, averaged over modes, and its
  ratio to the multinomial variance of i.i.d. batches drawn from the training set."""
  indices_SxB = np.asarray(indices_SxB)
  labels_N = np.asarray(labels_N)
  steps, batch = indices_SxB.shape
  labels_SxB = labels_N[indices_SxB]
  counts_SxK = np.zeros((steps, num_modes))
  np.add.at(counts_SxK, (np.repeat(np.arange(steps), batch), labels_SxB.reshape(-1)), 1)
  shares_SxK = counts_SxK / batch
  p_K = np.bincount(labels_N, minlength=num_modes) / len(labels_N)
  variance = float(shares_SxK.var(axis=0).mean())
  iid = float((p_K * (1 - p_K)).mean() / batch)
  return {"variance": variance, "iid_variance": iid, "ratio": variance / iid if iid else None}


def order_stats(indices_SxB: np.ndarray, labels_N: np.ndarray, num_modes: int) -> dict:
  """All three readings of one stream (see the module docstring)."""
  return {
    "steps": int(np.shape(indices_SxB)[0]),
    "batch_size": int(np.shape(indices_SxB)[1]),
    "num_examples": len(labels_N),
    "repeat_fraction": repeat_fraction(indices_SxB),
    "gaps": gap_summary(gaps(indices_SxB)),
    "mode_mix": mode_mix(indices_SxB, labels_N, num_modes),
  }


def nearest_mode(points_Nx2: np.ndarray, means_Kx2: np.ndarray) -> np.ndarray:
  """Each point's mode: the nearest mixture mean (the components are far apart)."""
  distances_NxK = np.linalg.norm(points_Nx2[:, None, :] - means_Kx2[None, :, :], axis=-1)
  return distances_NxK.argmin(axis=1)


def training_labels(config) -> tuple[np.ndarray, int]:
  """The mode of every training example of a mixture config, and the number of modes: the
  training set drawn exactly as a run draws it (the TRAIN_SET stream of config.seed)."""
  name = config.data.name
  if name not in mixtures.MIXTURES:
    raise ValueError(
      f"order statistics need each example's mode, which jgen knows for the 2D mixtures "
      f"({', '.join(sorted(mixtures.MIXTURES))}), not for data.name={name!r}"
    )
  if config.train.get("packing", "grouped") != "grouped":
    raise ValueError(
      "order statistics read the training set in its drawn order; train.packing="
      f"{config.train.packing!r} reorders it: use --config.train.packing=grouped"
    )
  mixture = mixtures.get_mixture(name)
  key = rng.stream_key(rng.root_key(config.seed), rng.Stream.TRAIN_SET)
  draw = mixture.sample_balanced if config.data.get("balanced", False) else mixture.sample
  points = np.asarray(draw(key, config.data.num_train))
  return nearest_mode(points, np.asarray(mixture.means_Kx2)), mixture.num_modes
