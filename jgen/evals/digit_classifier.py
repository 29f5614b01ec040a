"""A small CNN that labels 8x8 digits: the mode classifier of Stacked digits, and its features.

Trained inside jgen on scikit-learn's digits (`jgen.data.digits`) with a fixed seed, then
cached on disk keyed by a hash of its config and of the data, so a machine trains it once:

  JGEN_CACHE_DIR (default ~/.cache/jgen)/digit_classifier-<hash>.msgpack  (+ .json: accuracy)

Its held-out accuracy (a seeded 20% split never trained on) must reach MIN_ACCURACY: below
that, mode counts and the feature metrics built on it mean little, so loading raises.

`logits` and `features` are pure functions of float images [N, 8, 8, 1] in [0, 1]; they jit and
vmap, and a trainer can call them inside its own jitted evaluation.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from absl import logging

from jgen.data import digits

MIN_ACCURACY = 0.97
CACHE_ENV = "JGEN_CACHE_DIR"

# Everything that changes the trained weights; part of the cache key.
CONFIG = {
  "version": 1,
  "data": "sklearn_digits",
  "held_out_fraction": 0.2,
  "split_seed": 0,
  "init_seed": 0,
  "widths": (16, 32),
  "feature_dim": 128,
  "epochs": 30,
  "batch_size": 64,
  "learning_rate": 2e-3,
  "weight_decay": 1e-4,
  "max_shift": 1,  # random shifts of up to 1 pixel: generated digits are rarely centred exactly
}


class DigitCNN(nn.Module):
  """x_Nx8x8x1 -> (logits_Nx10, features_NxF): two 3x3 convs (the second strided), a dense
  feature layer, a linear read-out."""

  widths: tuple[int, ...]
  feature_dim: int

  @nn.compact
  def __call__(self, x_NxHxWx1: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = x_NxHxWx1 * 2.0 - 1.0
    for i, width in enumerate(self.widths):
      h = nn.relu(nn.Conv(width, (3, 3), strides=(1, 1) if i == 0 else (2, 2))(h))
    features_NxF = nn.relu(nn.Dense(self.feature_dim)(h.reshape(h.shape[0], -1)))
    return nn.Dense(digits.NUM_CLASSES)(features_NxF), features_NxF


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class DigitClassifier:
  module: DigitCNN
  params: Any
  accuracy: float  # on the held-out split
  cache_path: str

  def logits(self, x_Nx8x8x1: jax.Array) -> jax.Array:
    return self.module.apply(self.params, jnp.asarray(x_Nx8x8x1, jnp.float32))[0]

  def features(self, x_Nx8x8x1: jax.Array) -> jax.Array:
    """The penultimate layer (post-ReLU, F=128): the space of the domain FID/KID/PR/DC."""
    return self.module.apply(self.params, jnp.asarray(x_Nx8x8x1, jnp.float32))[1]

  def predict(self, x_Nx8x8x1: jax.Array) -> jax.Array:
    return jnp.argmax(self.logits(x_Nx8x8x1), axis=-1).astype(jnp.int32)

  @property
  def feature_dim(self) -> int:
    return self.module.feature_dim


def _module(config: dict) -> DigitCNN:
  return DigitCNN(tuple(config["widths"]), config["feature_dim"])


def cache_key(config: dict = CONFIG) -> str:
  images, labels = digits.load_digits()
  h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
  h.update(images.tobytes())
  h.update(labels.tobytes())
  return h.hexdigest()[:16]


def default_cache_dir() -> str:
  return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "jgen")


def _shift(key: jax.Array, x_NxHxWx1: jax.Array, max_shift: int) -> jax.Array:
  """Each image moved by a random integer offset in [-max_shift, max_shift]^2, zero-filled."""
  if max_shift == 0:
    return x_NxHxWx1
  pad = max_shift
  padded = jnp.pad(x_NxHxWx1, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets_Nx2 = jax.random.randint(key, (x_NxHxWx1.shape[0], 2), 0, 2 * pad + 1)
  h, w = x_NxHxWx1.shape[1:3]

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, 1))

  return jax.vmap(crop)(padded, offsets_Nx2)


def train(config: dict = CONFIG) -> tuple[Any, float]:
  """(params, held-out accuracy), deterministic given `config` on one platform."""
  images, labels = digits.load_digits()
  train_idx, held_idx = digits.split(len(labels), config["held_out_fraction"], config["split_seed"])
  x_train, y_train = jnp.asarray(images[train_idx]), jnp.asarray(labels[train_idx])
  module = _module(config)
  key = jax.random.key(config["init_seed"])
  params = module.init(jax.random.fold_in(key, 0), x_train[:1])
  steps_per_epoch = len(train_idx) // config["batch_size"]
  num_steps = config["epochs"] * steps_per_epoch
  schedule = optax.cosine_decay_schedule(config["learning_rate"], num_steps)
  optimizer = optax.adamw(schedule, weight_decay=config["weight_decay"])

  def epoch(carry, epoch_index):
    params, opt_state = carry
    epoch_key = jax.random.fold_in(jax.random.fold_in(key, 1), epoch_index)
    order = jax.random.permutation(epoch_key, len(train_idx))
    batches = order[: steps_per_epoch * config["batch_size"]].reshape(steps_per_epoch, -1)

    def step(carry, batch_and_index):
      params, opt_state = carry
      batch, index = batch_and_index
      x = _shift(jax.random.fold_in(epoch_key, index), x_train[batch], config["max_shift"])

      def loss_fn(params):
        logits = module.apply(params, x)[0]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y_train[batch]).mean()

      grads = jax.grad(loss_fn)(params)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    carry, _ = jax.lax.scan(step, (params, opt_state), (batches, jnp.arange(steps_per_epoch)))
    return carry, None

  (params, _), _ = jax.jit(lambda p, s: jax.lax.scan(epoch, (p, s), jnp.arange(config["epochs"])))(
    params, optimizer.init(params)
  )
  predicted = jnp.argmax(module.apply(params, jnp.asarray(images[held_idx]))[0], axis=-1)
  accuracy = float(jnp.mean(predicted == jnp.asarray(labels[held_idx])))
  return jax.device_get(params), accuracy


def _write_atomically(path: str, data: bytes) -> None:
  directory = os.path.dirname(path)
  with tempfile.NamedTemporaryFile(dir=directory, delete=False) as f:
    f.write(data)
  os.replace(f.name, path)


def load_digit_classifier(cache_dir: str | None = None) -> DigitClassifier:
  """The trained classifier: read from the cache, or trained (seconds on a CPU) and cached.

  Raises RuntimeError if its held-out accuracy is below MIN_ACCURACY.
  """
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(cache_dir, f"digit_classifier-{cache_key()}.msgpack")
  module = _module(CONFIG)
  like = module.init(jax.random.key(0), jnp.zeros((1, *digits.IMAGE_SHAPE), jnp.float32))
  try:
    with open(path, "rb") as f:
      params = flax.serialization.from_bytes(like, f.read())
    with open(path.removesuffix(".msgpack") + ".json") as f:
      accuracy = json.load(f)["held_out_accuracy"]
    logging.info("Digit classifier from %s: held-out accuracy %.4f", path, accuracy)
  except (OSError, ValueError, KeyError):
    logging.info("Training the digit classifier (cache miss: %s)...", path)
    params, accuracy = train(CONFIG)
    os.makedirs(cache_dir, exist_ok=True)
    info = {"held_out_accuracy": accuracy, "config": CONFIG, "key": cache_key()}
    _write_atomically(path.removesuffix(".msgpack") + ".json", json.dumps(info).encode())
    _write_atomically(path, flax.serialization.to_bytes(params))
    logging.info("Digit classifier trained: held-out accuracy %.4f, cached at %s", accuracy, path)
  if accuracy < MIN_ACCURACY:
    raise RuntimeError(
      f"the digit classifier's held-out accuracy {accuracy:.4f} is below {MIN_ACCURACY}: "
      f"mode counts would mean little. Delete {path} to retrain, or change its CONFIG"
    )
  params = jax.tree.map(jnp.asarray, params)
  return DigitClassifier(module, params, accuracy, path)
