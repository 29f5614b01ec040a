"""A small CNN that labels digits: the mode classifier of stacked digits, and its features.

Two recipes (RECIPES), one per source of digits:
- "sklearn_digits" (default, offline): scikit-learn's 8x8 digits (`jgen.data.digits`); the
  held-out set is a seeded 20% split never trained on.
- "mnist": TFDS MNIST (28x28), when it is prepared (jgen/data/tfds_source.py); trained on the
  `train` split, held out on `test`. It gives `mnist` runs 10 modes and `stacked_mnist` 1,000.
Each is trained inside jgen with a fixed seed, then cached on disk keyed by a hash of its
recipe and of the data, so a machine trains it once:

  JGEN_CACHE_DIR (default ~/.cache/jgen)/digit_classifier-<data>-<hash>.msgpack (+ .json)

The scikit-learn recipe's weights also ship with jgen (SHIPPED_DIR), trained by that recipe at
XLA's default settings: every reader's metrics then use the same bits, whatever CPU would have
trained them, and no machine spends the training. A recipe or data change gives a new hash, so
the shipped file stops matching and the classifier is trained and cached as above
(docs/decisions.md, "The shipped digit classifier", says how to ship the new one).

Its held-out accuracy must reach MIN_ACCURACY: below that, mode counts and the feature metrics
built on it mean little, so loading raises.

`logits` and `features` are pure functions of float images [N, H, W, 1] in [0, 1]; they jit and
vmap, and a trainer can call them inside its own jitted evaluation.
"""

import dataclasses
import hashlib
import json
import os
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from jgen.core import jsonl
from jgen.data import digits

MIN_ACCURACY = 0.97
CACHE_ENV = "JGEN_CACHE_DIR"

# Everything that changes the trained weights; part of the cache key.
# `dispatch` is how training runs, not what it computes: "scan" runs all epochs as one XLA
# program (fastest for 8x8 inputs); "per_step" dispatches one jitted step at a time, because
# XLA:CPU ran the 28x28 convs many times slower inside a rolled loop (measured: jgen/run/loop.py).
CONFIG = {
  "version": 1,
  "data": "sklearn_digits",
  "image_size": 8,
  "dispatch": "scan",
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
MNIST_CONFIG = {
  "version": 1,
  "data": "mnist",
  "image_size": 28,
  "dispatch": "per_step",
  "train_split": "train",
  "held_out_split": "test",  # MNIST's own 10,000 test digits
  "init_seed": 0,
  "widths": (16, 32, 64),  # 28 -> 28 -> 14 -> 7
  "feature_dim": 128,
  "epochs": 3,
  "batch_size": 128,
  "learning_rate": 2e-3,
  "weight_decay": 1e-4,
  "max_shift": 2,
}
RECIPES = {"sklearn_digits": CONFIG, "mnist": MNIST_CONFIG}


class DigitCNN(nn.Module):
  """x_Nx8x8x1 -> (logits_Nx10, features_NxF): two 3x3 convs (the second strided), a dense
  feature layer, a linear read-out."""

  widths: tuple[int, ...]
  feature_dim: int

  @nn.compact
  def __call__(self, x_NxHxWx1: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = x_NxHxWx1 * 2.0 - 1.0
    for i, width in enumerate(self.widths):  # the first conv keeps the size, the rest halve it
      h = nn.relu(nn.Conv(width, (3, 3), strides=(1, 1) if i == 0 else (2, 2))(h))
    features_NxF = nn.relu(nn.Dense(self.feature_dim)(h.reshape(h.shape[0], -1)))
    return nn.Dense(digits.NUM_CLASSES)(features_NxF), features_NxF


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class DigitClassifier:
  module: DigitCNN
  params: Any
  accuracy: float  # on the held-out split
  cache_path: str
  data: str = "sklearn_digits"  # the recipe it was trained by

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


@dataclasses.dataclass(frozen=True)
class LabelledDigits:
  """A recipe's data: float32 images [N, H, W, 1] in [0, 1] and int32 labels, two splits."""

  train_images: np.ndarray
  train_labels: np.ndarray
  held_images: np.ndarray
  held_labels: np.ndarray


def _sklearn_digits(config: dict, data_dir: str | None) -> LabelledDigits:
  del data_dir  # ships with scikit-learn
  images, labels = digits.load_digits()
  train_idx, held_idx = digits.split(len(labels), config["held_out_fraction"], config["split_seed"])
  return LabelledDigits(images[train_idx], labels[train_idx], images[held_idx], labels[held_idx])


def _read_tfds_digits(name: str, split: str, data_dir: str, size: int):
  """(uint8 images, int32 labels) of a TFDS split."""
  from jgen.data import tfds_source

  return tfds_source.read_labelled(tfds_source.open_source(name, split, data_dir), size)


def _mnist(config: dict, data_dir: str | None) -> LabelledDigits:
  from jgen.data import tfds_source

  data_dir = data_dir or tfds_source.tfds_data_dir(None)
  splits = [
    _read_tfds_digits("mnist", config[s], data_dir, config["image_size"])
    for s in ("train_split", "held_out_split")
  ]
  (train_x, train_y), (held_x, held_y) = splits
  # uint8 0..255 -> float32 [0, 1], the scale TfdsImages.gather gives the trainer
  return LabelledDigits(
    train_x.astype(np.float32) / 255.0, train_y, held_x.astype(np.float32) / 255.0, held_y
  )


_LOADERS = {"sklearn_digits": _sklearn_digits, "mnist": _mnist}


def labelled_digits(config: dict = CONFIG, data_dir: str | None = None) -> LabelledDigits:
  return _LOADERS[config["data"]](config, data_dir)


def cache_key(
  config: dict = CONFIG, data_dir: str | None = None, data: LabelledDigits | None = None
) -> str:
  """The hash of the recipe and of its data (`data`, if already read)."""
  data = data or labelled_digits(config, data_dir)
  h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
  for array in dataclasses.astuple(data):
    h.update(np.ascontiguousarray(array).tobytes())
  return h.hexdigest()[:16]


SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


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


def train(
  config: dict = CONFIG, data_dir: str | None = None, data: LabelledDigits | None = None
) -> tuple[Any, float]:
  """(params, held-out accuracy), deterministic given `config` and the data on one platform."""
  data = data or labelled_digits(config, data_dir)
  x_train, y_train = jnp.asarray(data.train_images), jnp.asarray(data.train_labels)
  num_train = len(data.train_labels)
  module = _module(config)
  key = jax.random.key(config["init_seed"])
  params = module.init(jax.random.fold_in(key, 0), x_train[:1])
  steps_per_epoch = num_train // config["batch_size"]
  if steps_per_epoch == 0:
    raise ValueError(
      f"{num_train} training digits are fewer than one batch of {config['batch_size']}"
    )
  num_steps = config["epochs"] * steps_per_epoch
  schedule = optax.cosine_decay_schedule(config["learning_rate"], num_steps)
  optimizer = optax.adamw(schedule, weight_decay=config["weight_decay"])

  def epoch_batches(epoch_index):
    """(the epoch's key, its batches of indices [steps_per_epoch, B]): a fresh permutation."""
    epoch_key = jax.random.fold_in(jax.random.fold_in(key, 1), epoch_index)
    order = jax.random.permutation(epoch_key, num_train)
    return epoch_key, order[: steps_per_epoch * config["batch_size"]].reshape(steps_per_epoch, -1)

  def step(carry, batch, epoch_key, index):
    params, opt_state = carry
    x = _shift(jax.random.fold_in(epoch_key, index), x_train[batch], config["max_shift"])

    def loss_fn(params):
      logits = module.apply(params, x)[0]
      return optax.softmax_cross_entropy_with_integer_labels(logits, y_train[batch]).mean()

    grads = jax.grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  carry = (params, optimizer.init(params))
  if config["dispatch"] == "scan":

    def epoch(carry, epoch_index):
      epoch_key, batches = epoch_batches(epoch_index)

      def body(carry, batch_and_index):
        batch, index = batch_and_index
        return step(carry, batch, epoch_key, index), None

      carry, _ = jax.lax.scan(body, carry, (batches, jnp.arange(steps_per_epoch)))
      return carry, None

    carry = jax.jit(lambda c: jax.lax.scan(epoch, c, jnp.arange(config["epochs"]))[0])(carry)
  else:
    batches_fn, step_fn = jax.jit(epoch_batches), jax.jit(step)
    for epoch_index in range(config["epochs"]):
      epoch_key, batches = batches_fn(jnp.int32(epoch_index))
      for index in range(steps_per_epoch):
        carry = step_fn(carry, batches[index], epoch_key, jnp.int32(index))
      logging.info(
        "Digit classifier (%s): epoch %d/%d", config["data"], epoch_index + 1, config["epochs"]
      )
  params = carry[0]
  predicted = _predict_in_chunks(module, params, data.held_images)
  accuracy = float(np.mean(predicted == data.held_labels))
  return jax.device_get(params), accuracy


def _predict_in_chunks(module, params, images: np.ndarray, chunk: int = 2048) -> np.ndarray:
  predict = jax.jit(lambda p, x: jnp.argmax(module.apply(p, x)[0], axis=-1))
  return np.concatenate(
    [
      np.asarray(predict(params, jnp.asarray(images[i : i + chunk])))
      for i in range(0, len(images), chunk)
    ]
  )


def _file_name(config: dict, key: str) -> str:
  name = (
    "digit_classifier"
    if config["data"] == "sklearn_digits"
    else f"digit_classifier-{config['data']}"
  )
  return f"{name}-{key}.msgpack"


def cached_path(config: dict, key: str, cache_dir: str | None = None) -> str:
  """Where the classifier of `config` with cache key `key` is kept: the shipped weights when
  they match and no cache_dir is named, else the cache (written on a miss)."""
  shipped = os.path.join(SHIPPED_DIR, _file_name(config, key))
  if cache_dir is None and os.path.exists(shipped):
    return shipped
  return os.path.join(cache_dir or default_cache_dir(), _file_name(config, key))


def is_cached(data: str = "sklearn_digits", cache_dir: str | None = None) -> bool:
  """Whether load_digit_classifier(cache_dir, data) would read its weights rather than train."""
  config = RECIPES[data]
  key = cache_key(config, data=labelled_digits(config, None))
  return os.path.exists(cached_path(config, key, cache_dir))


def load_digit_classifier(
  cache_dir: str | None = None,
  data: str = "sklearn_digits",
  data_dir: str | None = None,
  config: dict | None = None,
) -> DigitClassifier:
  """The classifier of recipe RECIPES[data] (or `config`): read from the cache, or trained and
  cached (seconds for scikit-learn's digits, about a minute per MNIST epoch on 2 CPU cores).

  `data_dir` is the TFDS data directory, for the MNIST recipe. Raises RuntimeError if the
  held-out accuracy is below MIN_ACCURACY.
  """
  if config is None:
    if data not in RECIPES:
      raise ValueError(f"no digit classifier for {data!r}: choose one of {sorted(RECIPES)}")
    config = RECIPES[data]
  data = labelled_digits(config, data_dir)  # read once: for the key, and to train on a miss
  key = cache_key(config, data=data)
  path = cached_path(config, key, cache_dir)
  module = _module(config)
  size = config["image_size"]
  like = module.init(jax.random.key(0), jnp.zeros((1, size, size, 1), jnp.float32))
  try:
    with open(path, "rb") as f:
      params = flax.serialization.from_bytes(like, f.read())
    with open(path.removesuffix(".msgpack") + ".json") as f:
      accuracy = json.load(f)["held_out_accuracy"]
    logging.info("Digit classifier from %s: held-out accuracy %.4f", path, accuracy)
  except (OSError, ValueError, KeyError):
    logging.info("Training the %s digit classifier (cache miss: %s)...", config["data"], path)
    params, accuracy = train(config, data=data)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    info = {"held_out_accuracy": accuracy, "config": config, "key": key}
    jsonl.replace_bytes(path.removesuffix(".msgpack") + ".json", json.dumps(info).encode())
    jsonl.replace_bytes(path, flax.serialization.to_bytes(params))
    logging.info("Digit classifier trained: held-out accuracy %.4f, cached at %s", accuracy, path)
  if accuracy < MIN_ACCURACY:
    raise RuntimeError(
      f"the {config['data']} digit classifier's held-out accuracy {accuracy:.4f} is below "
      f"{MIN_ACCURACY}: mode counts would mean little. Delete {path} to retrain, or change its "
      "recipe (jgen/evals/digit_classifier.py RECIPES)"
    )
  params = jax.tree.map(jnp.asarray, params)
  return DigitClassifier(module, params, accuracy, path, config["data"])
