"""The convolutional generator of a DGN/GLO: a code z [N, z_dim] -> an image [N, H, W, C].

z -> dense to a (H / 2^k) x (W / 2^k) x width map -> k times (nearest x2 upsample, conv 3x3,
LeakyReLU(0.2)) -> `extra_convs` more conv 3x3 + LeakyReLU -> conv 1x1 to C channels. The
output is linear (the mean of the Gaussian / Laplace likelihood); evaluation clips it to [0, 1].
"""

from flax import linen as nn


class DgnGenerator(nn.Module):
  image_shape: tuple  # (H, W, C)
  width: int = 128
  num_upsamples: int = 2  # 8x8 images start from 2x2
  extra_convs: int = 1

  @nn.compact
  def __call__(self, z_NxZ):
    h, w, c = self.image_shape

    def act(x):
      # Leaky: with ReLU, one of 64 digits stayed at 36 dB for 3,000 steps (dead units).
      return nn.leaky_relu(x, 0.2)

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
