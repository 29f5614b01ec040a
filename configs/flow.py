r"""Flow matching (rectified flow) on a 2D mixture: the denoising baseline beside configs/gan.py.

Same data, training set, data order, batch (100), evaluation (2,500 samples, PacGAN's modes,
high quality, reverse KL) and seeds as configs/gan.py. One time-conditioned MLP (SiLU, 3 x 256,
jgen/models/denoisers.py) regresses the velocity x1 - x0 of the straight path from a unit
Gaussian to the data (jgen/losses/denoising.py); samples are an Euler solve of its ODE, 50
steps, 50 network evaluations per sample (on ring8 Euler put more samples on a mode than Heun,
docs/flow.md). Adam 1e-3 with a cosine decay, 20k steps.

  python -m jgen.main --config=configs/flow.py --workdir=runs/flow
  python -m jgen.main --config=configs/flow.py:data=grid25 --workdir=runs/flow_grid
  python -m jgen.main --config=configs/flow.py:objective=noise_prediction --workdir=runs/ddpm
  python -m jgen.main --config=configs/flow.py --config.sampling.method=heun ...

Switches after the colon: data=ring8|grid25, objective=flow_matching|noise_prediction,
runlocal (a tiny smoke run).
"""

import ml_collections

from jgen.collapse import detectors as collapse
from jgen.core import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, data="ring8", objective="flow_matching", runlocal=False)
  return base_config(arg)


def base_config(arg) -> ml_collections.ConfigDict:
  """The shared denoiser config; configs/dflow.py and configs/flow_digits.py change it."""
  c = ml_collections.ConfigDict()
  c.trainer = "denoise"
  c.seed = 0
  c.deterministic = True  # XLA flags for bit-reproducible GPU runs; no-op on CPU/TPU

  c.data = ml_collections.ConfigDict()
  c.data.name = arg.data
  c.data.num_train = 100_000  # PacGAN's fixed training set, as configs/gan.py
  c.data.fresh_samples = False
  # True: the training set holds every mode equally often (point i from mode i mod K).
  c.data.balanced = False

  # The index stream, exactly configs/gan.py's keys (jgen/data/samplers.py).
  c.sampler = ml_collections.ConfigDict()
  c.sampler.kind = "epoch_shuffle"
  c.sampler.streak_length = 4
  c.sampler.streak_scope = "slot"
  c.sampler.streak_dist = "fixed"
  c.sampler.streak_base = "epoch_shuffle"
  c.sampler.path = ""

  c.objective = ml_collections.ConfigDict()
  # flow_matching | noise_prediction | discriminator_flow | level_ratio
  c.objective.name = arg.objective
  c.objective.s_min = 1e-3  # noise prediction: smallest noise level trained and sampled
  # > 1 draws training levels nearer the data (1: uniform; jgen/losses/denoising.warp_levels).
  c.objective.level_power = 1.0
  c.objective.num_levels = 16  # level_ratio: K levels t_j = j / K, one D per adjacent pair

  c.model = ml_collections.ConfigDict()
  c.model.width = 256
  c.model.depth = 3
  c.model.time_dim = 32

  # How an evaluation turns noise into samples. method: euler | heun (ODE), ancestral (noise
  # prediction), ascent (discriminator flow); evaluations per sample: steps (euler, ancestral,
  # ascent), 2 x steps (heun), +1 for noise prediction's ODE (its final denoising).
  c.sampling = ml_collections.ConfigDict()
  c.sampling.method = "euler" if arg.objective == "flow_matching" else "ancestral"
  c.sampling.num_steps = 50 if arg.objective == "flow_matching" else 100
  # ascent only: the first step's size, the last's (geometric in between; 0: constant), and
  # whether a step follows the unit gradient direction (its length is then the step size).
  c.sampling.step_size = 0.0
  c.sampling.final_step_size = 0.0
  c.sampling.normalize = False
  # Ascent: scale the steps so that it can reach the farthest mode from any likely start.
  c.sampling.reach_every_mode = False

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.momentum = 0.9  # `momentum` optimizer only

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 20_000
  # Cosine decay of the updates to 0 at num_steps (none | cosine): measured on ring8, high
  # quality 0.48 without, 0.66 with (both Heun, 25 steps; docs/flow.md).
  c.train.lr_decay = "cosine"
  c.train.batch_size = 100
  c.train.steps_per_dispatch = 500
  c.train.log_every = 1000
  c.train.eval_every = 5000
  c.train.checkpoint_every = 5000
  c.train.keep_checkpoints = 3

  c.eval = ml_collections.ConfigDict()
  c.eval.num_samples = 2500  # PacGAN's protocol, as the GANs
  c.eval.sample_batch = 2500  # samples per sampling program (memory, not results)

  c.population = ml_collections.ConfigDict()
  c.population.size = 1
  # Devices a population is split over, whole members on each (0: all; on CPU, one per core).
  # Each member's results depend on how many members share a device: the split is recorded.
  c.population.devices = 0
  c.population.variants = ""

  c.collapse = collapse.default_config()

  if arg.runlocal:
    c.data.num_train = 10_000
    c.model.width = 64
    c.train.num_steps = 400
    c.train.steps_per_dispatch = 100
    c.train.log_every = 100
    c.train.eval_every = 200
    c.train.checkpoint_every = 200
  c.lock()
  return c
