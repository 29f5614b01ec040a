r"""Flow matching on stacked digits (1,000 modes), beside configs/stacked_digits_gan.py.

The same data (128,000 seeded triples of scikit-learn's 8x8 digits as three channels), order,
batch (64), evaluation (26,000 samples: modes of 1,000 and KL with jgen's digit classifier,
classifier-feature FID, KID, precision/recall, density/coverage, birthday) and seeds as the
GAN config (its `data` and `eval` sections are copied from there). The network is a small
time-conditioned U-Net (jgen/models/denoisers.py TimeConvNet, 32 channels at 8x8, 64 at 4x4);
images are scaled to [-1, 1] for the Gaussian source; samples are a Heun solve of 10 steps
(20 network evaluations per sample). Adam 5e-4.

  python -m jgen.main --config=configs/flow_digits.py --workdir=runs/flow_digits
  python -m jgen.main --config=configs/flow_digits.py:objective=noise_prediction --workdir=W
  python -m jgen.main --config=configs/flow_digits.py:runlocal --workdir=runs/flow_digits_tiny

Switches after the colon: objective=flow_matching|noise_prediction, runlocal (a smoke run).
"""

import ml_collections

from configs import flow, stacked_digits_gan
from jgen.core import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, objective="flow_matching", runlocal=False)
  gan = stacked_digits_gan.get_config("runlocal" if arg.runlocal else None)
  c = flow.base_config(
    config_lib.parse_arg(f"objective={arg.objective}", data="", objective="", runlocal=False)
  )
  with c.unlocked():
    c.data = ml_collections.ConfigDict(gan.data.to_dict())
    c.eval = ml_collections.ConfigDict(gan.eval.to_dict())
    c.eval.sample_batch = 2000  # images per sampling program: memory, not results
    c.model.width = 32
    c.optimizer.learning_rate = 5e-4
    if arg.objective == "flow_matching":  # Heun: 2 evaluations a step, 20 per sample
      c.sampling.method = "heun"
      c.sampling.num_steps = 10
    else:
      c.sampling.num_steps = 50
    c.train.num_steps = 10_000
    c.train.batch_size = 64
    c.train.steps_per_dispatch = 250
    c.train.log_every = 500
    c.train.eval_every = 5000
    c.train.checkpoint_every = 2500
    if arg.runlocal:
      c.model.width = 8
      c.train.num_steps = 200
      c.train.steps_per_dispatch = 50
      c.train.log_every = 50
      c.train.eval_every = 100
      c.train.checkpoint_every = 100
  c.lock()
  return c
