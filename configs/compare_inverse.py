r"""DGN prior vs Deep Image Prior on the same degraded digits (jgen/studies/inverse_comparison.py).

  python -m jgen.compare_inverse --config=configs/compare_inverse.py --workdir=runs/inverse
  python -m jgen.compare_inverse --config=configs/compare_inverse.py:runlocal --workdir=W

The prior is configs/dgn.py on the first 1,024 digits (z_dim 32). Test digits: 16 held out
(1500..1515, never trained on) and the first 16 training digits. Degradations on 8x8 images:
denoise sigma 25/255, inpaint keeping a random 50% of pixels, superres 2x (4x would leave a
2x2 image). Both methods see the same y and minimize the same data term. DIP's skip
connections, input scale and input perturbation are configs/dip.py's; its net is smaller
(two 32-channel scales, 16 input channels) to fit an 8x8 digit.
"""

import ml_collections

from configs import dgn, dip
from jgen.core import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False)
  dip_defaults = dip.get_config()
  c = ml_collections.ConfigDict()
  c.study_kind = "inverse_comparison"  # so that jgen.study runs it too
  c.seed = 0
  c.prior = dgn.get_config("n=1024,z_dim=32")
  c.prior.train.num_steps = 8000
  c.prior.train.eval_every = 2000
  c.prior.train.checkpoint_every = 2000
  c.prior.eval.final_extras = False
  c.tasks = "denoise,inpaint,superres"
  c.num_images = 16
  c.noise_std = 25 / 255
  c.keep_fraction = 0.5
  c.mask = dip_defaults.degrade.mask
  c.factor = 2
  c.z_steps = 300
  c.z_learning_rate = 0.05
  c.g_steps = 100
  c.g_learning_rate = 1e-4
  c.dip_channels = (32, 32)
  c.dip_input = 16  # input channels
  c.dip_skip_channels = dip_defaults.model.skip_channels
  c.dip_input_scale = dip_defaults.model.input_scale
  c.dip_input_noise_std = dip_defaults.model.input_noise_std
  c.dip_learning_rate = 0.01
  c.dip_steps = 1000
  c.dip_eval_every = 50
  if arg.runlocal:
    c.prior = dgn.get_config("n=64,z_dim=32")
    c.prior.train.num_steps = 2000
    c.prior.train.eval_every = 1000
    c.prior.train.checkpoint_every = 1000
    c.prior.eval.final_extras = False
    c.num_images = 4
    c.z_steps = 100
    c.g_steps = 20
    c.dip_steps = 200
  c.lock()
  return c
