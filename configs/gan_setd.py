r"""Set-discriminator GAN on a 2D mixture: D judges sets of m generated samples.

Each step's batch of 100 samples (real, and fake) is split into 25 sets of
m=4 by a keyed random assignment (the `packing` stream); the DeepSets
discriminator embeds each sample, pools mean, variance and third moment over
the set, and scores the set. Everything else is configs/gan.py, jgen's fast
baseline (PacGAN's sizes; PacGAN's own protocol is configs/pacgan.py).

  python -m jgen.main --config=configs/gan_setd.py --workdir=runs/gan_setd
  python -m jgen.main --config=configs/gan_setd.py:data=grid25 --workdir=runs/setd_grid
  python -m jgen.main --config=configs/gan_setd.py \
      --config.model.discriminator.name=attention --workdir=runs/setd_attn

Discriminators: deepsets, attention, pack (PacGAN's packing with ReLU layers; configs/pacgan.py
has PacGAN's maxout D), minibatch_disc, mbstd.
"""

from configs import gan
from jgen.core import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, data="ring8", runlocal=False)
  return gan.base_config(arg, discriminator="deepsets", set_size=4)
