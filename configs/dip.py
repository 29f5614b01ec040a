r"""Deep Image Prior: fit one degraded image from a fixed noise input with a conv net.

Default image: a 128x128 crop of the `china` photograph that ships inside scikit-learn
(`sklearn.datasets.load_sample_image`), so it runs offline. Every evaluation logs `psnr`
(against the clean image) and `psnr_input` (of the degraded input) and saves the output under
images/; DIP must be stopped early, and the final row reports `best_psnr` and `best_step`.

  python -m jgen.main --config=configs/dip.py --workdir=runs/dip_denoise
  python -m jgen.main --config=configs/dip.py --config.task=inpaint --workdir=runs/dip_inpaint
  python -m jgen.main --config=configs/dip.py:task=superres --workdir=runs/dip_superres

Tasks: denoise (Gaussian noise, sigma 25/255), inpaint (a random mask keeping 50% of the
pixels; degrade.mask=block for a hole), superres (4x average pooling). Switches after the
colon: task, image=china|flower, runlocal (a tiny smoke run).
"""

import ml_collections

from jgen.core import config as config_lib
from jgen.run import interface


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, task="denoise", image="china", runlocal=False)
  c = ml_collections.ConfigDict()
  c.trainer = "dip"
  c.seed = 0
  c.deterministic = True
  c.task = arg.task  # denoise | inpaint | superres

  c.data = ml_collections.ConfigDict()
  c.data.image = arg.image  # china | flower | digit
  c.data.crop = 128
  c.data.top = 180  # a crop with both texture and edges (the china photo is 427x640)
  c.data.left = 260
  c.data.index = 1500  # data.image=digit: which sklearn digit

  c.degrade = ml_collections.ConfigDict()
  c.degrade.noise_std = 25 / 255  # denoise
  c.degrade.extra_noise_std = 0.0  # inpaint and superres: observation noise (none by default)
  c.degrade.keep_fraction = 0.5  # inpaint: fraction of pixels observed
  c.degrade.mask = "random"  # inpaint: random | block
  c.degrade.factor = 4  # superres

  c.model = ml_collections.ConfigDict()
  c.model.channels = (32, 32, 32, 32)  # one entry per scale; sides must divide by 2**len
  c.model.skip_channels = 4
  c.model.input_channels = 32
  c.model.input_scale = 0.1
  c.model.input_noise_std = 1 / 30  # per-step input perturbation (Ulyanov et al.)

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 0.01
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.momentum = 0.9

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 3000
  c.train.steps_per_dispatch = interface.UNROLLED_STEPS  # unrolled (interface.dispatch_for)
  c.train.log_every = 100
  c.train.eval_every = 100
  c.train.checkpoint_every = 1000
  c.train.keep_checkpoints = 2

  if arg.runlocal:
    c.data.crop = 32
    c.model.channels = (8, 8)
    c.model.input_channels = 8
    c.train.num_steps = 40
    c.train.log_every = 20
    c.train.eval_every = 20
    c.train.checkpoint_every = 20
  c.lock()
  return c
