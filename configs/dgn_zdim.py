r"""How small can z be to restore N digits? A DGN sweep over N x z_dim x G width.

  python -m jgen.study --config=configs/dgn_zdim.py --workdir=runs/zdim
  python -m jgen.study --config=configs/dgn_zdim.py:runlocal --workdir=runs/zdim_local

Every cell is configs/dgn.py (MSE) with its N, z_dim and width, trained for
max(min_steps, epochs * N / batch) steps. The report gives, per N, the smallest z_dim (and
the narrowest G at it) for which every one of the N images reaches 40 dB (jgen/studies/dgn_zdim.py).
`runlocal` is a two-minute smoke grid; its numbers test the code, not the question.
"""

import ml_collections

from configs import dgn
from jgen.core import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False)
  c = ml_collections.ConfigDict()
  c.study_kind = "dgn_zdim"  # the study, by name (jgen/studies/__init__.py)
  c.base = dgn.get_config()
  c.study = ml_collections.ConfigDict()
  # Comma-separated, so that `--config.study.z_dims=1,2,4` works.
  c.study.num_train = "64,256,1024"
  c.study.z_dims = "1,2,4,8,16,32"
  c.study.widths = "16,32,64"
  c.study.epochs = 1000  # visits per image; N=1024 at batch 64 gives 16,000 steps
  c.study.min_steps = 4000
  if arg.runlocal:
    c.study.num_train = "16"
    c.study.z_dims = "1,8"
    c.study.widths = "16"
    c.study.epochs = 100
    c.study.min_steps = 1000
  c.lock()
  return c
