"""The generators of a DGN/GLO: a code z [N, z_dim] -> an image [N, H, W, C], by name
(`model.architecture`, make_generator):

  conv  z -> dense to a (H / 2^k) x (W / 2^k) x width map -> k times (nearest x2 upsample,
        conv 3x3, LeakyReLU(0.2)) -> `extra_convs` more conv 3x3 + LeakyReLU -> conv 1x1 to C
        channels;
  mlp   z -> `depth` dense layers of `width` units with LeakyReLU(0.2) -> dense to H x W x C:
        no spatial prior at all, so that the capacity study can ask which G restores the most
        images per parameter.

Outputs are linear (the mean of the Gaussian / Laplace likelihood); evaluation clips them to
[0, 1].
"""

from flax import linen as nn

from jgen.core import registry


def _act(x):
  # Leaky: with ReLU, one of 64 digits stayed at 36 dB for 3,000 steps (dead units).
  return nn.leaky_relu(x, 0.2)


class DgnGenerator(nn.Module):
  image_shape: tuple  # (H, W, C)
  width: int = 128
  num_upsamples: int = 2  # 8x8 images start from 2x2
  extra_convs: int = 1

  @nn.compact
  def __call__(self, z_NxZ):
    h, w, c = self.image_shape
    act = _act
    scale = 2**self.num_upsamples
    if h % scale or w % scale:
      raise ValueError(
        f"a {h}x{w} image cannot be reached by {self.num_upsamples} x2 upsamplings; "
        "change model.num_upsamples"
      )
    x = act(nn.Dense(h // scale * w // scale * self.width)(z_NxZ))
    x = x.reshape(z_NxZ.shape[0], h // scale, w // scale, self.width)
    for _ in range(self.num_upsamples):
      x = x.repeat(2, axis=1).repeat(2, axis=2)
      x = act(nn.Conv(self.width, (3, 3))(x))
    for _ in range(self.extra_convs):
      x = act(nn.Conv(self.width, (3, 3))(x))
    return nn.Conv(c, (1, 1))(x)


class DgnMlpGenerator(nn.Module):
  image_shape: tuple  # (H, W, C)
  width: int = 256
  depth: int = 2

  @nn.compact
  def __call__(self, z_NxZ):
    x = z_NxZ
    for _ in range(self.depth):
      x = _act(nn.Dense(self.width)(x))
    h, w, c = self.image_shape
    return nn.Dense(h * w * c)(x).reshape(z_NxZ.shape[0], h, w, c)


ARCHITECTURES = ("conv", "mlp")


def make_generator(model_config, image_shape: tuple) -> nn.Module:
  """The DGN generator `model_config.architecture` names (default conv)."""
  name = model_config.get("architecture", "conv")
  registry.choose("model.architecture", name, dict.fromkeys(ARCHITECTURES))
  if name == "mlp":
    if model_config.get("depth", 2) < 1:
      raise ValueError(f"model.depth must be >= 1 for the mlp G, got {model_config.depth}")
    return DgnMlpGenerator(tuple(image_shape), model_config.width, model_config.get("depth", 2))
  return DgnGenerator(
    image_shape=tuple(image_shape),
    width=model_config.width,
    num_upsamples=model_config.num_upsamples,
    extra_convs=model_config.extra_convs,
  )
