"""TFDS image datasets read by random access (`tfds.data_source`, array_record files).

Reading needs no TensorFlow; preparing does (once, online):

  pip install tensorflow && tfds build mnist --file_format=array_record [--data_dir=DIR]

then `--config.data.name=mnist` (and `--config.data.tfds_data_dir=DIR` if not the default
~/tensorflow_datasets). Offline with nothing prepared, `load` fails in well under a second
with that instruction (download=False: nothing ever reaches for the network).

Two ways into the step, both driven by jgen's exact index stream:
- small datasets (uint8 bytes <= data.device_bytes_limit) are read once and put on the
  device; the jitted step gathers its batch by index, as for stacked digits;
- large ones stay on the host: a Grain DataLoader whose Sampler yields the sampler's index
  stream (position p = step * batch + slot) reads records with prefetching threads, and the
  trainer feeds each step its batch (`HostBatches`).
`stacked_mnist` is MNIST stacked as stacked digits are (jgen/data/stacked.py).
"""

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jgen.data import stacked

PREPARE_HINT = (
  "prepare it once, online: `pip install tensorflow && tfds build {name} "
  "--file_format=array_record --data_dir={data_dir}`, or point --config.data.tfds_data_dir at "
  "a directory that holds it (TensorFlow is needed only to prepare, not to read)"
)
SOURCE = {"mnist": "mnist", "stacked_mnist": "mnist", "cifar10": "cifar10", "celeb_a": "celeb_a"}
DEFAULT_SIZE = {"celeb_a": 64}  # images are resized (centre crop, then area) to this size


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class TfdsImages:
  """Images as uint8 [N, H, W, C]: on the device (`images`) or read on the host (`source`)."""

  name: str
  sample_shape: tuple[int, int, int]
  num_examples: int
  images: np.ndarray | None  # the whole dataset, when it goes to the device
  source: object | None  # the random-access data source, when it stays on the host
  size: int  # output size (H = W)
  num_modes: int = 0  # 10 for MNIST on the device: its classes, labelled by the MNIST classifier
  labels: np.ndarray | None = None  # int32 [N], when the dataset has modes
  classifier: str | None = None  # the digit classifier's recipe, for datasets with modes
  classifier_data_dir: str | None = None

  def mode_distribution(self) -> np.ndarray:
    """p_data over the classes: their frequencies in the training split (float64)."""
    return np.bincount(self.labels, minlength=self.num_modes) / len(self.labels)

  @property
  def on_host(self) -> bool:
    return self.images is None

  def training_set(self, key: jax.Array, num_train: int) -> dict:
    del key  # the dataset is what it is; the seed only orders it
    if self.on_host:
      return {}
    return {"images": jnp.asarray(self.images[:num_train])}

  def gather(self, data: dict, indices_B: jax.Array) -> jax.Array:
    return to_float(data["images"][indices_B])

  def read(self, index: int) -> np.ndarray:
    """One record as uint8 [H, W, C] (host path)."""
    return _to_size(np.asarray(self.source[int(index)]["image"]), self.size)


def tfds_data_dir(data_config=None) -> str:
  return (
    (data_config.tfds_data_dir if data_config is not None else None)
    or os.environ.get("TFDS_DATA_DIR")
    or os.path.expanduser("~/tensorflow_datasets")
  )


def open_source(name: str, split: str, data_dir: str):
  """tfds.data_source without downloads; a ValueError naming the fix when it is not prepared."""
  import tensorflow_datasets as tfds

  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as error:  # TFDS raises several types for "not prepared"
    hint = PREPARE_HINT.format(name=name, data_dir=data_dir)
    raise ValueError(
      f"TFDS dataset {name!r} (split {split!r}) is not prepared as array_record in {data_dir}: "
      f"{hint}. ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
    ) from None


def _to_size(image_HxWxC: np.ndarray, size: int) -> np.ndarray:
  h, w = image_HxWxC.shape[:2]
  if h == size and w == size:
    return image_HxWxC
  crop = min(h, w)  # centre square, then an area-average resize by an integer factor or PIL
  top, left = (h - crop) // 2, (w - crop) // 2
  square = image_HxWxC[top : top + crop, left : left + crop]
  from PIL import Image  # matplotlib depends on Pillow

  resized = Image.fromarray(square.squeeze(-1) if square.shape[-1] == 1 else square).resize(
    (size, size), Image.BOX
  )
  out = np.asarray(resized, np.uint8)
  return out[..., None] if out.ndim == 2 else out


def _read_all(source, size: int) -> np.ndarray:
  return np.stack([_to_size(np.asarray(source[i]["image"]), size) for i in range(len(source))])


def read_labelled(source, size: int) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, size, size, C], labels int32 [N]), each record read once."""
  records = [source[i] for i in range(len(source))]
  images = np.stack([_to_size(np.asarray(r["image"]), size) for r in records])
  return images, np.asarray([r["label"] for r in records], np.int32)


def load(name: str, data_config):
  """The image dataset `name` from prepared TFDS data (see the module docstring)."""
  data_dir = tfds_data_dir(data_config)
  source = open_source(SOURCE[name], data_config.split, data_dir)
  first = np.asarray(source[0]["image"])
  size = data_config.image_size or DEFAULT_SIZE.get(name, first.shape[0])
  shape = (size, size, first.shape[-1])
  # MNIST's modes are its classes, labelled by a classifier trained on MNIST (28x28 only).
  classified = SOURCE[name] == "mnist" and size == 28
  classifier = {"classifier": "mnist", "classifier_data_dir": data_dir} if classified else {}
  if name == "stacked_mnist":
    images, labels = read_labelled(source, size)
    return stacked.StackedDigits("stacked_mnist", images[..., 0], labels, **classifier)
  num_bytes = len(source) * int(np.prod(shape))
  if num_bytes > data_config.device_bytes_limit:
    return TfdsImages(name, shape, len(source), None, source, size)
  if not classified:
    return TfdsImages(name, shape, len(source), _read_all(source, size), None, size)
  images, labels = read_labelled(source, size)
  return TfdsImages(name, shape, len(source), images, None, size, 10, labels, **classifier)


class IndexStreamSampler:
  """A Grain Sampler: record i is slot i % B of step start + i // B of jgen's index stream.

  Index windows are computed by the jitted sampler, `window` steps at a time, and cached.
  """

  def __init__(
    self, sample_indices, root, batch_size: int, start_step: int, num_steps: int, window: int = 256
  ):
    self._sample_indices = sample_indices
    self._root = root
    self._batch = batch_size
    self._start = start_step
    self._num_steps = num_steps
    self._window = window
    self._windows = functools.lru_cache(maxsize=4)(self._compute_window)
    # Compiled once per sampler: every window has the same shape, so it is never retraced.
    self._indices_of_steps = jax.jit(jax.vmap(sample_indices, in_axes=(None, 0)))

  def _compute_window(self, first_step: int) -> np.ndarray:
    steps = jnp.arange(first_step, first_step + self._window, dtype=jnp.int32)
    return np.asarray(self._indices_of_steps(self._root, steps))

  def index_at(self, step: int, slot: int) -> int:
    first = step - step % self._window
    return int(self._windows(first)[step - first, slot])

  def __getitem__(self, index: int):
    import grain.python as grain

    step = self._start + index // self._batch
    if step >= self._num_steps:
      raise IndexError(index)
    return grain.RecordMetadata(index=index, record_key=self.index_at(step, index % self._batch))


class HostBatches:
  """Batches uint8 [B, H, W, C] for steps start, start+1, ... read by Grain."""

  def __init__(
    self,
    data: TfdsImages,
    sample_indices,
    root,
    batch_size: int,
    start_step: int,
    num_steps: int,
    workers: int,
  ):
    import grain.python as grain

    class _Source:  # what Grain reads: the record, already at the training size
      def __len__(self):
        return data.num_examples

      def __getitem__(self, index):
        return data.read(index)

    self.sampler = IndexStreamSampler(sample_indices, root, batch_size, start_step, num_steps)
    loader = grain.DataLoader(
      data_source=_Source(),
      sampler=self.sampler,
      operations=[grain.Batch(batch_size, drop_remainder=True)],
      worker_count=0,  # the sampler calls JAX: threads (read_options), not processes
      # One process reads every record: multi-host runs replicate the host batch (README).
      shard_options=grain.NoSharding(),
      read_options=grain.ReadOptions(
        num_threads=max(1, workers), prefetch_buffer_size=4 * batch_size
      ),
    )
    self._iterator = iter(loader)

  def next_batch(self) -> jax.Array:
    """uint8 [B, H, W, C]; the step scales it inside jit exactly as `TfdsImages.gather` does."""
    return jnp.asarray(next(self._iterator), jnp.uint8)


def to_float(images_uint8: jax.Array) -> jax.Array:
  return images_uint8.astype(jnp.float32) / 255.0
