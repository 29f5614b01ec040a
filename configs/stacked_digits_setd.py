r"""Stacked digits (1,000 modes) with a convolutional set discriminator (DeepSets, m=4).

Each step's 64 images (real, and fake) are split into 16 sets of 4 by the keyed `packing`
stream; D embeds each image with the same conv stack as the baseline, pools the mean and
central moments 2..3 over the set, and scores the set. Everything else is
configs/stacked_digits_gan.py.

  python -m jgen.main --config=configs/stacked_digits_setd.py --workdir=runs/sd_setd
  python -m jgen.main --config=configs/stacked_digits_setd.py:runlocal --workdir=runs/sd_tiny
  python -m jgen.main --config=configs/stacked_digits_setd.py \
      --config.model.discriminator.name=conv_attention --workdir=runs/sd_attn

Set discriminators: conv_deepsets, conv_attention, conv_pack (PacGAN), conv_mbstd.
Switches after the colon: runlocal (a tiny smoke run).
"""

from configs import stacked_digits_gan
from jgen.core import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False)
  return stacked_digits_gan.image_config(arg, discriminator="conv_deepsets", set_size=4)
