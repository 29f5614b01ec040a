"""The Deep Image Prior net (Ulyanov et al. 2018): an encoder-decoder with skip connections.

Input: a fixed noise image [N, H, W, input_channels]. Each level downsamples by a strided
conv 3x3 and convs again; the decoder upsamples (bilinear), concatenates a narrow skip branch
(conv 1x1 to `skip_channels`) of the encoder at that scale, and convs twice. LeakyReLU(0.2)
throughout, sigmoid output in [0, 1]. Each conv is followed by per-channel normalization over
the image (GroupNorm with one channel per group): Ulyanov et al.'s batch norm on a batch of
one image in training mode computes exactly this, without running statistics in the state.
"""

import jax
import jax.numpy as jnp
from flax import linen as nn


class SkipNet(nn.Module):
  out_channels: int = 3
  channels: tuple = (32, 64, 64, 64)
  skip_channels: int = 4

  @nn.compact
  def __call__(self, x):
    depth = len(self.channels)
    factor = 2**depth
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(
        f"a {x.shape[1]}x{x.shape[2]} input cannot pass {depth} downsamplings by 2; "
        f"use an image whose sides divide by {factor} or fewer model.channels"
      )

    def act(y):
      return nn.leaky_relu(nn.GroupNorm(num_groups=None, group_size=1)(y), 0.2)

    skips = []
    for channels in self.channels:
      skips.append(act(nn.Conv(self.skip_channels, (1, 1))(x)) if self.skip_channels else None)
      x = act(nn.Conv(channels, (3, 3), strides=2)(x))
      x = act(nn.Conv(channels, (3, 3))(x))
    for channels, skip in zip(reversed(self.channels), reversed(skips), strict=True):
      n, h, w, c = x.shape
      x = jax.image.resize(x, (n, 2 * h, 2 * w, c), "bilinear")
      if skip is not None:
        x = jnp.concatenate([x, skip], axis=-1)
      x = act(nn.Conv(channels, (3, 3))(x))
      x = act(nn.Conv(channels, (1, 1))(x))
    return nn.sigmoid(nn.Conv(self.out_channels, (1, 1))(x))
