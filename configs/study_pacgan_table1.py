r"""PacGAN's Table 1 as one study: m in {1,2,3,4} x {ring8, grid25}, 10 seeds per cell.

Each cell is configs/pacgan.py at (data, m) with its seeds trained as one population (one
vmapped program); the report gives modes, high-quality fraction and reverse KL as mean ±
standard error over seeds (PacGAN's convention), beside the published values below, and marks
cells more than 2 combined standard errors from the paper (jgen/studies/pacgan_table1.py).

  python -m jgen.study --config=configs/study_pacgan_table1.py --workdir=runs/table1
  python -m jgen.study --config=configs/study_pacgan_table1.py:runlocal --workdir=runs/t1_local
  python -m jgen.study --config=configs/study_pacgan_table1.py:adam=blocks_v7 --workdir=runs/t1_v7
  python -m jgen.study --config=configs/study_pacgan_table1.py --config.study.pack_sizes=1,2 \
      --config.study.seeds=5 --config.base.train.num_steps=10000 --workdir=runs/table1_10k

The full table is 8 cells x 10 seeds x 400,000 steps: meant for an accelerator (docs/pacgan.md
has the measured cost). `runlocal` shrinks the nets, data and length so the whole pipeline runs
on a 2-core CPU in a few minutes: its numbers test the code, not PacGAN.
"""

import ml_collections

from configs import pacgan
from jgen.core import config as config_lib

# Lin, Khetan, Fanti, Oh. PacGAN: The power of two samples in generative adversarial
# networks. NeurIPS 2018, Table 1 (also github fjxmlzn/PacGAN,
# synthetic_data_experiments/results/Table1.png): mean ± standard error over 10 trials.
# high_quality in percent, as published. Rows: m = 1 is "GAN", m = k "PacGANk".
PUBLISHED_SOURCE = "PacGAN (Lin et al., NeurIPS 2018) Table 1; fjxmlzn/PacGAN results/Table1.png"
PUBLISHED = {
  "ring8": {
    "m1": {"modes": (6.3, 0.5), "high_quality": (98.2, 0.2), "reverse_kl": (0.45, 0.09)},
    "m2": {"modes": (7.9, 0.1), "high_quality": (95.6, 2.0), "reverse_kl": (0.07, 0.03)},
    "m3": {"modes": (7.8, 0.1), "high_quality": (97.7, 0.3), "reverse_kl": (0.10, 0.02)},
    "m4": {"modes": (7.8, 0.1), "high_quality": (95.9, 1.4), "reverse_kl": (0.07, 0.02)},
  },
  "grid25": {
    "m1": {"modes": (17.3, 0.8), "high_quality": (94.8, 0.7), "reverse_kl": (0.70, 0.07)},
    "m2": {"modes": (23.8, 0.7), "high_quality": (91.3, 0.8), "reverse_kl": (0.13, 0.04)},
    "m3": {"modes": (24.6, 0.4), "high_quality": (94.2, 0.4), "reverse_kl": (0.06, 0.02)},
    "m4": {"modes": (24.8, 0.2), "high_quality": (93.6, 0.6), "reverse_kl": (0.04, 0.01)},
  },
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, adam="blocks_v8", runlocal=False)
  c = ml_collections.ConfigDict()
  c.study_kind = "pacgan_table1"  # the study, by name (jgen/studies/__init__.py)
  # adam=blocks_v8|blocks_v7: optax b1 = 0.8 or 0.2 for PacGAN's beta1 (configs/pacgan.py).
  c.base = pacgan.get_config(f"adam={arg.adam}")
  c.base.collapse.trace = False  # populations are not traced
  # Measured on one device; its published numbers need the same split (decisions.md).
  c.base.population.devices = 1
  c.base.train.eval_every = 10_000
  c.base.train.log_every = 10_000
  c.base.train.steps_per_dispatch = 1000

  c.study = ml_collections.ConfigDict()
  c.study.data = "ring8,grid25"  # comma-separated, so --config.study.data=ring8 works
  c.study.pack_sizes = "1,2,3,4"
  c.study.seeds = 10  # seeds seed..seed+9 of one cell run as one population
  c.study.published_source = PUBLISHED_SOURCE
  # published[data][f"m{m}"][measure] = (mean, standard error)
  c.study.published = ml_collections.ConfigDict(PUBLISHED)

  if arg.runlocal:
    c.study.seeds = 2
    c.study.pack_sizes = "1,2"
    c.base.data.num_train = 1000
    c.base.model.generator.width = 32
    c.base.model.discriminator.width = 16
    c.base.model.discriminator.maxout_pieces = 2
    c.base.train.num_steps = 200
    c.base.train.steps_per_dispatch = 100
    c.base.train.eval_every = 100
    c.base.train.log_every = 100
    c.base.train.checkpoint_every = 100
    c.base.eval.num_samples = 500
    c.base.eval.bn_refresh_batches = 5
  c.lock()
  return c
