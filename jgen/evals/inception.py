"""The standard Inception FID: Frechet distance of the FID Inception-v3's 2048-d pool3 features.

The network is TensorFlow's 2015-12-05 Inception graph as pytorch-fid ports it, computed here
in Flax to match `pytorch_fid.inception.InceptionV3(output_blocks=[3], resize_input=True,
normalize_input=True, use_fid_inception=True)`:
- input float images [N, H, W, C] in [0, 1]; C = 1 (grey) is replicated to 3 channels, the
  usual convention for grey images, so digits and colour images share one network;
- resized to 299x299 bilinearly without antialiasing, as torch's
  F.interpolate(mode="bilinear", align_corners=False) does: both sample at
  (i + 0.5) * in / out - 0.5, and at the border torch clamps the position to the edge pixel
  where jax drops the outside tap and renormalizes, which gives the same value;
- scaled to [-1, 1];
- torchvision's Inception-v3 blocks with pytorch-fid's FIDInceptionA/C/E changes: the branch
  average pools leave the zero padding out of the mean (TF's SAME pooling), and Mixed_7c's
  pool branch is a max pool, as in the TF graph;
- batch norm with the stored running statistics (eps 0.001, the TF graph's), never updated.

jgen never downloads the weights: the user gets pytorch-fid's file and converts it once
(`python -m jgen.inception_weights`, which needs torch); see WEIGHTS_HELP.

Weights file layout (.npz, float32): one array per PyTorch state_dict key the pool3 forward
uses (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_var`, ...), each in PyTorch's
own layout (conv weights [out, in, kh, kw]); the classifier (`fc.*`) and `num_batches_tracked`
may be present and are ignored. Keeping PyTorch's names and layouts makes the file a plain dump
of the state_dict, checkable against it key by key; the transpose to Flax's [kh, kw, in, out]
happens on load.

These are not jgen's domain metrics (jgen/evals/features.py: the digit classifier's features);
the Frechet formula is the same function, `features.fid`.
"""

import dataclasses
import functools
import os
import tempfile
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jgen.evals import features

FEATURE_DIM = 2048
IMAGE_SIZE = 299
BN_EPSILON = 1e-3  # the TF graph's; torchvision's BasicConv2d uses the same
PTH_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
  "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + PTH_NAME
)
WEIGHTS_HELP = (
  f"make the file from pytorch-fid's weights: download {FID_WEIGHTS_URL}, then "
  f"`pip install torch` and run `python -m jgen.inception_weights --pth={PTH_NAME} "
  "--out=inception_fid.npz`"
)
FEATURE_SPACE = (
  "Inception-v3 pool3, 2048-d: TF 2015-12-05 FID graph (pytorch-fid weights), images "
  "bilinearly resized to 299x299; the standard FID"
)
# In a full state_dict but not on the way to pool3.
IGNORED_KEYS = ("fc.weight", "fc.bias")
IGNORED_SUFFIX = ".num_batches_tracked"
# Flax leaf name -> the PyTorch state_dict leaf it holds.
_TORCH_LEAF = {
  "kernel": "weight",
  "scale": "weight",
  "bias": "bias",
  "mean": "running_mean",
  "var": "running_var",
}


class InceptionWeightsError(ValueError):
  """The weights file is missing or is not the FID Inception's; the message says how to fix it."""


class BasicConv2d(nn.Module):
  """torchvision's BasicConv2d: conv without bias, batch norm (running statistics), ReLU."""

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)
  # HIGHEST: on accelerators the default float32 conv may run in TF32/bfloat16, which moves
  # the features off the float32 reference that published FIDs were computed with.
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x_NxHxWxC):
    pad_h, pad_w = self.padding
    x = nn.Conv(
      self.features,
      self.kernel_size,
      self.strides,
      padding=((pad_h, pad_h), (pad_w, pad_w)),
      use_bias=False,
      precision=self.precision,
      name="conv",
    )(x_NxHxWxC)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
    return nn.relu(x)


def _max_pool_3x3_stride2(x):
  return nn.max_pool(x, (3, 3), (2, 2), "VALID")


def _avg_pool_3x3_same(x):
  # pytorch-fid's patch: TF's average pool leaves padded zeros out of the mean.
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


class FIDInceptionA(nn.Module):
  pool_features: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch1x1 = conv(64, (1, 1), name="branch1x1")(x)
    branch5x5 = conv(48, (1, 1), name="branch5x5_1")(x)
    branch5x5 = conv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(branch5x5)
    branch3x3dbl = conv(64, (1, 1), name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = conv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3_same(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch3x3 = conv(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
    branch3x3dbl = conv(64, (1, 1), name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = conv(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(branch3x3dbl)
    return jnp.concatenate([branch3x3, branch3x3dbl, _max_pool_3x3_stride2(x)], axis=-1)


class FIDInceptionC(nn.Module):
  channels_7x7: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    c7 = self.channels_7x7
    branch1x1 = conv(192, (1, 1), name="branch1x1")(x)
    branch7x7 = conv(c7, (1, 1), name="branch7x7_1")(x)
    branch7x7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(branch7x7)
    branch7x7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(branch7x7)
    dbl = conv(c7, (1, 1), name="branch7x7dbl_1")(x)
    dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(dbl)
    dbl = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(dbl)
    dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(dbl)
    dbl = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(dbl)
    branch_pool = conv(192, (1, 1), name="branch_pool")(_avg_pool_3x3_same(x))
    return jnp.concatenate([branch1x1, branch7x7, dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch3x3 = conv(192, (1, 1), name="branch3x3_1")(x)
    branch3x3 = conv(320, (3, 3), strides=(2, 2), name="branch3x3_2")(branch3x3)
    branch7x7x3 = conv(192, (1, 1), name="branch7x7x3_1")(x)
    branch7x7x3 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7x3)
    branch7x7x3 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7x3)
    branch7x7x3 = conv(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(branch7x7x3)
    return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_3x3_stride2(x)], axis=-1)


class FIDInceptionE(nn.Module):
  """pytorch-fid's FIDInceptionE_1 (pool="avg", Mixed_7b) and FIDInceptionE_2 (pool="max",
  Mixed_7c: the TF graph max-pools there, unlike the paper)."""

  pool: str
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch1x1 = conv(320, (1, 1), name="branch1x1")(x)
    branch3x3 = conv(384, (1, 1), name="branch3x3_1")(x)
    branch3x3_a = conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(branch3x3)
    branch3x3_b = conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(branch3x3)
    dbl = conv(448, (1, 1), name="branch3x3dbl_1")(x)
    dbl = conv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(dbl)
    dbl_a = conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(dbl)
    dbl_b = conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(dbl)
    if self.pool == "avg":
      pooled = _avg_pool_3x3_same(x)
    else:
      pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))  # pads with -inf, as torch
    branch_pool = conv(192, (1, 1), name="branch_pool")(pooled)
    outputs = [branch1x1, branch3x3_a, branch3x3_b, dbl_a, dbl_b, branch_pool]
    return jnp.concatenate(outputs, axis=-1)


def preprocess(images_NxHxWxC: jax.Array) -> jax.Array:
  """Images [N, H, W, 1 or 3] in [0, 1] -> [N, 299, 299, 3] in [-1, 1], as pytorch-fid's
  resize_input and normalize_input do (grey replicated to RGB)."""
  n, _, _, channels = images_NxHxWxC.shape
  if channels not in (1, 3):
    raise ValueError(f"Inception takes 1 or 3 channels, got images {images_NxHxWxC.shape}")
  x = jax.image.resize(
    jnp.asarray(images_NxHxWxC, jnp.float32),
    (n, IMAGE_SIZE, IMAGE_SIZE, channels),
    "bilinear",
    antialias=False,  # torch's F.interpolate does not antialias either (matters downsampling)
  )
  x = jnp.broadcast_to(x, (n, IMAGE_SIZE, IMAGE_SIZE, 3))
  return 2 * x - 1


class InceptionV3(nn.Module):
  """images [N, H, W, C] in [0, 1], C in {1, 3} -> pool3 features [N, 2048]."""

  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, images_NxHxWxC):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    x = conv(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(preprocess(images_NxHxWxC))
    x = conv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = conv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_stride2(x)
    x = conv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = conv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_stride2(x)
    p = self.precision
    x = FIDInceptionA(32, p, name="Mixed_5b")(x)
    x = FIDInceptionA(64, p, name="Mixed_5c")(x)
    x = FIDInceptionA(64, p, name="Mixed_5d")(x)
    x = InceptionB(p, name="Mixed_6a")(x)
    x = FIDInceptionC(128, p, name="Mixed_6b")(x)
    x = FIDInceptionC(160, p, name="Mixed_6c")(x)
    x = FIDInceptionC(160, p, name="Mixed_6d")(x)
    x = FIDInceptionC(192, p, name="Mixed_6e")(x)
    x = InceptionD(p, name="Mixed_7a")(x)
    x = FIDInceptionE("avg", p, name="Mixed_7b")(x)
    x = FIDInceptionE("max", p, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d(1): pool3


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity
class Inception:
  module: InceptionV3
  variables: Any  # {"params": ..., "batch_stats": ...}
  path: str

  def features(self, images_NxHxWxC: jax.Array) -> jax.Array:
    """Pure and jittable: pool3 features [N, 2048] of images in [0, 1]."""
    return self.module.apply(self.variables, images_NxHxWxC)


def _torch_key(path: tuple[str, ...]) -> str:
  return ".".join((*path[:-1], _TORCH_LEAF[path[-1]]))


@functools.cache
def _flax_shapes() -> dict[tuple[str, ...], tuple[tuple[str, ...], tuple[int, ...]]]:
  """torch key -> (collection + Flax path, Flax shape), from an abstract init (no compute)."""
  abstract = jax.eval_shape(
    InceptionV3().init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
  )
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract))
  return {_torch_key(path[1:]): (path, leaf.shape) for path, leaf in flat.items()}


def expected_shapes() -> dict[str, tuple[int, ...]]:
  """The weights file's keys and PyTorch-layout shapes (conv weights [out, in, kh, kw])."""
  shapes = {}
  for key, (path, shape) in _flax_shapes().items():
    shapes[key] = (shape[3], shape[2], shape[0], shape[1]) if path[-1] == "kernel" else shape
  return shapes


def check_weights(arrays: dict[str, np.ndarray], source: str) -> None:
  """Raises InceptionWeightsError unless `arrays` hold exactly the FID Inception's weights."""
  wanted = expected_shapes()
  unknown = sorted(
    k
    for k in arrays
    if k not in wanted and k not in IGNORED_KEYS and not k.endswith(IGNORED_SUFFIX)
  )
  if unknown:
    raise InceptionWeightsError(
      f"{source} holds {len(unknown)} arrays that are not FID Inception weights (e.g. "
      f"{', '.join(unknown[:3])}); {WEIGHTS_HELP}"
    )
  missing = [k for k in wanted if k not in arrays]
  if missing:
    raise InceptionWeightsError(
      f"{source} lacks {len(missing)} of the {len(wanted)} FID Inception arrays (e.g. "
      f"{', '.join(missing[:3])}); {WEIGHTS_HELP}"
    )
  for key, shape in wanted.items():
    value = arrays[key]
    if tuple(value.shape) != shape:
      raise InceptionWeightsError(
        f"{source}: {key} has shape {list(value.shape)}, expected {list(shape)} (PyTorch's "
        f"layout); {WEIGHTS_HELP}"
      )
    if value.dtype.kind != "f" or not np.isfinite(value).all():
      raise InceptionWeightsError(f"{source}: {key} is not finite floats ({value.dtype})")


def to_variables(arrays: dict[str, np.ndarray]) -> dict:
  """PyTorch-layout arrays (checked) -> Flax variables {"params", "batch_stats"}."""
  flat = {}
  for key, (path, _) in _flax_shapes().items():
    value = np.asarray(arrays[key], np.float32)
    flat[path] = jnp.asarray(value.transpose(2, 3, 1, 0) if path[-1] == "kernel" else value)
  return flax.traverse_util.unflatten_dict(flat)


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
  """Random arrays in the weights file's layout, for tests: He-normal convs and batch-norm
  statistics near (0, 1), so activations keep their scale through the 94 conv layers."""
  rng = np.random.default_rng(seed)
  arrays = {}
  for name, shape in sorted(expected_shapes().items()):
    if name.endswith("conv.weight"):
      value = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[1:]))
    elif name.endswith(("bn.weight", "bn.running_var")):
      value = rng.uniform(0.5, 1.5, size=shape)
    else:
      value = 0.1 * rng.normal(size=shape)
    arrays[name] = value.astype(np.float32)
  return arrays


def write_weights(path: str, arrays: dict[str, np.ndarray], source: str = "the arrays") -> None:
  """Checks `arrays` (from `source`) and writes them as the weights file, atomically: an
  interrupted write leaves no half-written file."""
  check_weights(arrays, source)
  wanted = expected_shapes()
  directory = os.path.dirname(os.path.abspath(path))
  with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz", delete=False) as f:
    try:
      np.savez(f, **{k: np.asarray(arrays[k], np.float32) for k in wanted})
    except BaseException:
      os.unlink(f.name)
      raise
  os.replace(f.name, path)


def load_inception(path: str) -> Inception:
  """The FID Inception from a weights file, or InceptionWeightsError saying how to make one.

  Cached per (path, modification time, size): the trainer can call it at every evaluation.
  """
  if not path or not os.path.isfile(path):
    raise InceptionWeightsError(f"Inception weights file not found: {path!r}; {WEIGHTS_HELP}")
  stat = os.stat(path)
  return _load_cached(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _load_cached(path: str, mtime_ns: int, size: int) -> Inception:
  del mtime_ns, size  # cache key only
  try:
    # allow_pickle=False: a weights file from elsewhere must not be able to run code here.
    loaded = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise InceptionWeightsError(f"cannot read {path} as a .npz ({e}); {WEIGHTS_HELP}") from None
  if not isinstance(loaded, np.lib.npyio.NpzFile):
    raise InceptionWeightsError(f"{path} holds one array, not a .npz of weights; {WEIGHTS_HELP}")
  with loaded:
    arrays = {k: loaded[k] for k in loaded.files}
  check_weights(arrays, path)
  return Inception(InceptionV3(), to_variables(arrays), path)


@functools.partial(jax.jit, static_argnums=0)
def _features_batch(module, variables, images_NxHxWxC):
  return module.apply(variables, images_NxHxWxC)


def inception_features(model: Inception, images, batch_size: int = 50) -> np.ndarray:
  """pool3 features float32 [N, 2048] of float images [N, H, W, C] in [0, 1], C in {1, 3}."""
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
    raise ValueError(f"Inception takes images [N, H, W, 1 or 3], got shape {images.shape}")
  batch = min(batch_size, len(images))
  chunks = []
  for start in range(0, len(images), batch):
    chunk = images[start : start + batch]
    # Pad the last chunk to the batch size: one compiled program for every chunk.
    padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.float32)])
    chunks.append(_features_batch(model.module, model.variables, padded)[: len(chunk)])
  return np.concatenate(jax.device_get(chunks))


def inception_fid(model: Inception, real, fake, batch_size: int = 50) -> float:
  """The standard FID between real and fake images (or pool3 features [N, 2048])."""
  real_NxF = real if np.ndim(real) == 2 else inception_features(model, real, batch_size)
  fake_NxF = fake if np.ndim(fake) == 2 else inception_features(model, fake, batch_size)
  return features.fid(real_NxF, fake_NxF)


def inception_fid_row(weights_path: str, real_images, fake_images, batch_size: int = 50) -> dict:
  """{"inception_fid": ...} for an evaluation row. `real_images` may instead be their
  `inception_features`, so a caller that evaluates often computes the reference once."""
  model = load_inception(weights_path)
  return {"inception_fid": inception_fid(model, real_images, fake_images, batch_size)}
