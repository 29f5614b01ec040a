r"""Optimizer sensitivity: five generator families x {adam, momentum, sgd} x 7 learning rates over
3 decades, on grid25 (and ring8 at the accelerator size), a population of seeds per cell
(jgen/studies/optimizer_sensitivity.py; design and definitions in
docs/preregistration/optimizer_sensitivity.md).

  python -m jgen.study --config=configs/study_optimizer.py --workdir=runs/study_optimizer
  python -m jgen.study --config=configs/study_optimizer.py:gpu --workdir=runs/study_optimizer_gpu
  python -m jgen.study --config=configs/study_optimizer.py:runlocal --workdir=runs/opt_local

Each family keeps its own config (configs/gan.py, gan_setd.py, flow.py,
flow.py:objective=noise_prediction, dflow.py) under `base.<family>`, with what the study holds
equal set on every one: the width of every network (`study` switch width=W), the number of steps,
the cosine learning-rate decay to 0 and the evaluation (PacGAN's modes and a sliced W1 to the
mixture at five points of the run, so that the curves show whether the budget sufficed). The grid
is centred on each family's rate per optimizer (`study.learning_rates`; the GANs' are the
sampling-order study's, the denoisers' keep the same ratios sgd = 10 x momentum = 100 x adam
from their Adam default 1e-3) and is widened past an edge that holds the best rate.

The default is the CPU size that fits one background run on a 2-core machine (grid25, width 64,
16,000 steps, 5 seeds; several hours); `:gpu` is the full size for an accelerator (ring8 and
grid25, width 256, 30,000 steps, 10 seeds, every device);
`runlocal` runs the pipeline in minutes (its numbers test the code, not the question). Seeds
3000 up, apart from every other study's; the pilot that chose the budget ran seeds 9100 up
(`seed=9100`).

Switches after the colon: runlocal, gpu, steps=N, seeds=S, width=W, seed=N.
"""

import ml_collections

from configs import dflow, flow, gan, gan_setd, study_sampling_order
from jgen.core import config as config_lib

GAN_RATES = {
  name: setting["optimizer"]["learning_rate"]
  for name, setting in study_sampling_order.OPTIMIZERS.items()
}
DENOISER_RATES = {"adam": 1e-3, "momentum": 1e-2, "sgd": 1e-1}
# Doubling 8,000 steps improved noise prediction's best by 13% in the pilot, flow matching's by
# nothing: 16,000 (docs/preregistration/optimizer_sensitivity.md).
CPU_STEPS = 16_000


def _set_width(base, width: int) -> None:
  if "generator" in base.model:
    base.model.generator.width = width
    base.model.discriminator.width = width
  else:
    base.model.width = width


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, gpu=False, steps=0, seeds=0, width=0, seed=3000)
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
  # The CPU size runs grid25, where the pilot left every family room to move; ring8 too on an
  # accelerator.
  c.study.data = "ring8,grid25" if arg.gpu else "grid25"
  c.study.lr_points = 7
  c.study.lr_decades = 3.0
  c.study.widen_points = 2  # rates added past an edge holding the best rate, per round
  c.study.widen_rounds = 2
  c.study.basin_tolerance = 0.5  # a rate is in the basin when its mean W1 <= 1.5 x the best
  c.study.seeds = arg.seeds or (10 if arg.gpu else 5)
  c.study.learning_rates = ml_collections.ConfigDict(
    {name: dict(GAN_RATES if name.endswith("gan") else DENOISER_RATES) for name in c.base}
  )

  steps = arg.steps or (30_000 if arg.gpu else CPU_STEPS)
  width = arg.width or (256 if arg.gpu else 64)
  if arg.runlocal:
    steps, width = arg.steps or 300, arg.width or 32
  for base in c.base.values():
    base.unlock()
    base.seed = arg.seed
    base.collapse.trace = False  # populations are not traced
    # The CPU numbers are measured on one device; a split changes the bits (decisions.md).
    base.population.devices = 0 if arg.gpu else 1
    _set_width(base, width)
    base.train.lr_decay = "cosine"
    base.train.num_steps = steps
    base.train.steps_per_dispatch = min(500, steps)
    base.train.log_every = steps // 5
    base.train.eval_every = steps // 5
    base.train.checkpoint_every = steps // 5
    base.evals = ml_collections.ConfigDict(
      {"distance": {"type": "sliced_w1", "every": steps // 5, "num_samples": 2500}}
    )
    if arg.runlocal:
      base.data.num_train = 500
      base.eval.num_samples = 500
      base.evals.distance.num_samples = 500
      if "sample_batch" in base.eval:
        base.eval.sample_batch = 500
    base.lock()
  if arg.runlocal:
    c.study.seeds = arg.seeds or 2
    c.study.lr_points = 3
    c.study.lr_decades = 2.0
    c.study.widen_rounds = 1
  c.lock()
  return c
