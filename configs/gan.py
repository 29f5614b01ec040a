r"""Per-sample discriminator GAN on a 2D mixture: jgen's fast baseline.

PacGAN's sizes, not its protocol: a fixed set of 100,000 points; G z(2) -> 4x400
ReLU -> 2 (no BatchNorm); D 3x200 ReLU -> 1 (not maxout); Flax's initializers;
D's step, then G's against the new D; Adam lr 1e-4 with optax's b1 = 0.8; batch
100 samples; evaluation on 2,500 samples; 30k steps, so that one run fits in a
few minutes on a laptop CPU (docs/decisions.md). PacGAN's official protocol
(BatchNorm G, maxout D, N(0, 0.02) init, simultaneous updates, packs, 400k
steps) is configs/pacgan.py; docs/pacgan.md compares the two.

  python -m jgen.main --config=configs/gan.py --workdir=runs/gan
  python -m jgen.main --config=configs/gan.py:data=grid25 --workdir=runs/gan_grid
  python -m jgen.main --config=configs/gan.py --config.sampler.kind=with_replacement ...

Switches after the colon: data=ring8|grid25, runlocal (a tiny smoke run).
"""

import ml_collections

from jgen.collapse import detectors as collapse
from jgen.core import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, data="ring8", runlocal=False)
  return base_config(arg, discriminator="mlp", set_size=1)


def base_config(arg, *, discriminator: str, set_size: int) -> ml_collections.ConfigDict:
  """The shared 2D GAN config; configs/gan_setd.py changes the discriminator."""
  c = ml_collections.ConfigDict()
  c.trainer = "gan"
  c.seed = 0
  # XLA flags for bit-reproducible GPU runs (jgen/core/parallel.py); no-op on CPU/TPU.
  c.deterministic = True

  c.data = ml_collections.ConfigDict()
  c.data.name = arg.data
  c.data.num_train = 100_000
  # True: a fresh mixture draw every step (Unrolled-GAN protocol) instead of a
  # fixed training set; then the sampler must be `with_replacement`.
  c.data.fresh_samples = False
  # True: the training set holds every mode equally often (point i from mode i mod K).
  c.data.balanced = False

  c.sampler = ml_collections.ConfigDict()
  c.sampler.kind = "epoch_shuffle"
  c.sampler.streak_length = 4
  c.sampler.streak_scope = "slot"
  c.sampler.streak_dist = "fixed"
  c.sampler.streak_base = "epoch_shuffle"
  c.sampler.path = ""

  c.model = ml_collections.ConfigDict()
  c.model.set_size = set_size
  c.model.generator = ml_collections.ConfigDict()
  c.model.generator.z_dim = 2
  c.model.generator.width = 400
  c.model.generator.depth = 4
  c.model.generator.batch_norm = False  # PacGAN's G (configs/pacgan.py)
  c.model.generator.init = "flax"  # or "normal_0.02" (jgen/models/mlp.py INITS)
  c.model.discriminator = ml_collections.ConfigDict()
  c.model.discriminator.name = discriminator
  c.model.discriminator.width = 200
  c.model.discriminator.depth = 3
  c.model.discriminator.init = "flax"
  # Set discriminators: central moments pooled by DeepSets (1 = mean only).
  c.model.discriminator.num_moments = 3
  c.model.discriminator.num_heads = 4  # attention pooling
  c.model.discriminator.num_kernels = 50  # minibatch discrimination (Salimans et al.)
  c.model.discriminator.kernel_dim = 5

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "non_saturating"
  c.loss.gp_weight = 10.0  # wgan_gp only

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-4
  c.optimizer.b1 = 0.8
  c.optimizer.b2 = 0.999
  c.optimizer.momentum = 0.9  # `momentum` optimizer only

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 30_000
  c.train.batch_size = 100
  c.train.steps_per_dispatch = 500  # steps fused into one lax.scan
  c.train.log_every = 1000
  c.train.eval_every = 5000
  c.train.checkpoint_every = 5000
  c.train.keep_checkpoints = 3
  # "grouped": consecutive samples form D's sets; "packs": PacGAN's packs (configs/pacgan.py).
  c.train.packing = "grouped"
  # "alternating": D then G sees the new D; "simultaneous": both from the same state (PacGAN).
  c.train.update_rule = "alternating"
  # Cosine decay of both optimizers' updates to 0 at num_steps (none | cosine); PacGAN's
  # protocol has none. configs/study_optimizer.py gives every family the same policy.
  c.train.lr_decay = "none"

  c.eval = ml_collections.ConfigDict()
  c.eval.num_samples = 2500  # PacGAN's protocol; pinned
  c.eval.bn_refresh_batches = 0  # BatchNorm G: batches that refresh its statistics first

  # P independent members (seeds seed..seed+P-1) in one vmapped program (README "Populations").
  c.population = ml_collections.ConfigDict()
  c.population.size = 1
  # Devices a population is split over, whole members on each (0: all; on CPU, one per core).
  # Each member's results depend on how many members share a device: the split is recorded.
  c.population.devices = 0
  # Same-shaped variants as members, e.g. 'optimizer.learning_rate=1e-4|3e-4' (run/variants.py).
  c.population.variants = ""

  # Collapse detectors and the per-step trace that replay verifies (jgen/collapse/).
  c.collapse = collapse.default_config()

  if arg.runlocal:
    c.data.num_train = 10_000
    c.train.num_steps = 400
    c.train.steps_per_dispatch = 100
    c.train.log_every = 100
    c.train.eval_every = 200
    c.train.checkpoint_every = 200
  c.lock()
  return c
