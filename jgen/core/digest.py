"""State digests: equal if and only if two pytrees are bit-identical.

Every logged row carries one, so two runs (or a run and its resumed twin) can
be compared step by step without keeping their checkpoints.
"""

import hashlib

import jax
import numpy as np


def tree_digest(tree) -> str:
  """sha256 over every leaf's path, dtype, shape and raw bytes (hex string)."""
  hasher = hashlib.sha256()
  leaves_with_paths, _ = jax.tree_util.tree_flatten_with_path(tree)
  for path, leaf in leaves_with_paths:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaf = leaf.addressable_data(0)  # replicated state: every process holds all of it
    array = np.asarray(leaf)
    if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
      array = np.asarray(jax.random.key_data(leaf))
    hasher.update(jax.tree_util.keystr(path).encode())
    hasher.update(f"{array.dtype}{array.shape}".encode())
    hasher.update(np.ascontiguousarray(array).tobytes())
  return hasher.hexdigest()
