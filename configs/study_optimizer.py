r"""Optimizer sensitivity: five generator families x {adam, momentum, sgd} x lr {1/3, 1, 3} x
the family's default, on ring8 and grid25, a population of seeds per cell
(jgen/studies/optimizer_sensitivity.py).

  python -m jgen.study --config=configs/study_optimizer.py --workdir=runs/study_optimizer
  python -m jgen.study --config=configs/study_optimizer.py:runlocal --workdir=runs/opt_local

Each family keeps its own config (configs/gan.py, gan_setd.py, flow.py,
flow.py:objective=noise_prediction, dflow.py) under `base.<family>`, so
`--config.base.flow_matching.model.width=128` changes one family. The full study (30
populations of 3 rates x 5 seeds, every family at its default length) is meant for an
accelerator; `steps=N` shortens every family to N steps (docs/flow.md reports the largest run
that fitted on the 2-core CPU), `runlocal` runs the whole pipeline in minutes: its numbers
test the code, not the question.

`--config.study.learning_rates.flow_matching.sgd=0.05` changes one family's rate for one
optimizer.

Switches after the colon: runlocal, steps=N (0: each family's default), seeds=S, width=W (every
network of every family W wide; 0: each family's default).
"""

import ml_collections

from configs import dflow, flow, gan, gan_setd, study_sampling_order
from jgen.core import config as config_lib

# Each family's learning rate per optimizer, which study.lr_multipliers scale: the GANs' are the
# sampling-order study's pinned values; the denoisers' keep the same ratios (sgd = 10 x
# momentum = 100 x adam) from their own Adam default, 1e-3.
GAN_RATES = {
  name: setting["optimizer"]["learning_rate"]
  for name, setting in study_sampling_order.OPTIMIZERS.items()
}
DENOISER_RATES = {"adam": 1e-3, "momentum": 1e-2, "sgd": 1e-1}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, steps=0, seeds=5, width=0)
  c = ml_collections.ConfigDict()
  c.study_kind = "optimizer_sensitivity"  # the study, by name (jgen/studies/__init__.py)
  c.base = ml_collections.ConfigDict()
  c.base.per_sample_gan = gan.get_config()
  c.base.set_gan = gan_setd.get_config()
  c.base.flow_matching = flow.get_config()
  c.base.noise_prediction = flow.get_config("objective=noise_prediction")
  c.base.discriminator_flow = dflow.get_config()

  c.study = ml_collections.ConfigDict()
  c.study.families = "per_sample_gan,set_gan,flow_matching,noise_prediction,discriminator_flow"
  c.study.optimizers = "adam,momentum,sgd"
  c.study.lr_multipliers = "0.3333333333333333,1,3"
  c.study.data = "ring8,grid25"
  c.study.seeds = arg.seeds
  c.study.min_high_quality = 0.5  # of a seed's samples, besides every mode captured
  c.study.learning_rates = ml_collections.ConfigDict(
    {name: dict(GAN_RATES if name.endswith("gan") else DENOISER_RATES) for name in c.base}
  )

  for base in c.base.values():
    base.unlock()
    base.collapse.trace = False  # populations are not traced
    # Measured on one device; its published numbers need the same split (decisions.md).
    base.population.devices = 1
    steps = arg.steps or base.train.num_steps
    if arg.runlocal:
      steps = arg.steps or 300
      base.data.num_train = 500
      base.eval.num_samples = 500
      if "sample_batch" in base.eval:
        base.eval.sample_batch = 500
      if "generator" in base.model:
        base.model.generator.width = 64
        base.model.discriminator.width = 64
      else:
        base.model.width = 64
    if arg.width:  # every network of every family at one width
      if "generator" in base.model:
        base.model.generator.width = arg.width
        base.model.discriminator.width = arg.width
      else:
        base.model.width = arg.width
    base.train.num_steps = steps
    base.train.steps_per_dispatch = min(500, steps)
    base.train.log_every = steps
    base.train.eval_every = steps
    base.train.checkpoint_every = steps
    base.lock()
  if arg.runlocal:
    c.study.seeds = 2
  c.lock()
  return c
