r"""How big a G and how small a z restore N digits? A DGN capacity curve over N x z_dim x
architecture x width (jgen/studies/dgn_capacity.py).

  python -m jgen.study --config=configs/dgn_capacity.py --workdir=runs/dgn_capacity
  python -m jgen.study --config=configs/dgn_capacity.py:long --workdir=runs/dgn_capacity_long
  python -m jgen.study --config=configs/dgn_capacity.py:losses --workdir=runs/dgn_losses
  python -m jgen.study --config=configs/dgn_capacity.py:runlocal --workdir=runs/capacity_local

Every cell is configs/dgn.py (MSE, Adam 3e-3 with a cosine decay, batch 64) with its N, z_dim,
architecture (the upsampling conv G or an MLP G) and width, trained for
max(min_steps, epochs * N / batch) steps: every image is visited `epochs` times, so the cost
grows linearly with N. N = 1500 is all of the training digits (1500-1796 stay held out).

`long` trains the cells at the frontier of all 1,500 digits (z 8 and 32; the conv G 64 wide, the
MLP G 256 and 512 wide) for 3x the visits: beside the main run's 1x cells they show whether the
curve had flattened (6 cells; the conv ones take most of an hour each on a 2-core CPU).
`losses` is the MLE against perceptual comparison at N = 1500: MSE and the perceptual loss
(random conv features) with a G that restores every image and one that does not (the widths
the capacity run found; docs/results/dgn_capacity/losses.md). `runlocal` is a smoke grid; its
numbers test the code.
"""

import ml_collections

from configs import dgn
from jgen.core import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, long=False, losses=False)
  c = ml_collections.ConfigDict()
  c.study_kind = "dgn_capacity"  # the study, by name (jgen/studies/__init__.py)
  c.base = dgn.get_config()
  c.study = ml_collections.ConfigDict()
  # Comma-separated, so that `--config.study.z_dims=1,2,4` works.
  c.study.num_train = "64,256,1024,1500"
  c.study.z_dims = "4,8,16,32"
  c.study.architectures = "conv,mlp"
  c.study.widths = ml_collections.ConfigDict({"conv": "16,32,64", "mlp": "64,128,256,512"})
  c.study.losses = "mse"
  c.study.epochs = "1000"  # visits per image; N=1500 at batch 64 gives 23,438 steps
  c.study.min_steps = 4000
  if arg.long:
    c.study.num_train = "1500"
    c.study.z_dims = "8,32"
    c.study.architectures = "mlp,conv"  # the MLP cells (minutes) first
    c.study.widths = ml_collections.ConfigDict({"conv": "64", "mlp": "256,512"})
    c.study.epochs = "3000"  # the 1,000-visit cells are the main run's
  if arg.losses:
    c.study.num_train = "1500"
    c.study.z_dims = "32"
    c.study.architectures = "mlp"
    c.study.widths.mlp = "128,512"
    c.study.losses = "mse,perceptual"
  if arg.runlocal:
    c.study.num_train = "16"
    c.study.z_dims = "1,8"
    c.study.widths = ml_collections.ConfigDict({"conv": "16", "mlp": "32"})
    c.study.epochs = "100"
    c.study.min_steps = 1000
  c.lock()
  return c
