r"""Stacked digits (1,000 modes) with a per-sample convolutional discriminator: the baseline.

The VEEGAN / PacGAN Stacked-MNIST protocol, offline: each sample stacks three of
scikit-learn's 8x8 digits as its channels; the training set is a fixed, seeded list of 128,000
triples; every evaluation generates 26,000 samples and counts the modes captured (of 1,000)
and KL(p_gen || p_data) with jgen's digit classifier, plus classifier-feature FID, KID,
precision/recall, density/coverage and the birthday test (docs/images.md).
DCGAN-style G and D (jgen/models/conv.py), Adam 2e-4, beta1 0.5, batch 64.

  python -m jgen.main --config=configs/stacked_digits_gan.py --workdir=runs/sd_gan
  python -m jgen.main --config=configs/stacked_digits_gan.py:runlocal --workdir=runs/sd_tiny
  python -m jgen.main --config=configs/stacked_digits_gan.py --config.data.name=mnist ...
  python -m jgen.main --config=configs/stacked_digits_gan.py \
      --config.model.discriminator.spectral_norm=True --workdir=runs/sd_gan_sn

Switches after the colon: runlocal (a tiny smoke run).
"""

import ml_collections

from configs import gan
from jgen.core import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False)
  return image_config(arg, discriminator="conv", set_size=1)


def image_config(arg, *, discriminator: str, set_size: int) -> ml_collections.ConfigDict:
  """configs/gan.py's keys (so every trainer feature applies), set for images."""
  c = gan.base_config(
    ml_collections.ConfigDict({"data": "ring8", "runlocal": False}),
    discriminator=discriminator,
    set_size=set_size,
  )
  c.unlock()
  c.data.name = "stacked_digits"
  c.data.num_train = 128_000  # VEEGAN / PacGAN
  # TFDS datasets (data.name=mnist|stacked_mnist|cifar10|celeb_a): where prepared data lives
  # ('' = TFDS's default, ~/tensorflow_datasets), the split, and the image size (celeb_a: 64).
  c.data.tfds_data_dir = ""
  c.data.split = "train"
  c.data.image_size = 0  # 0: the dataset's own size
  # Datasets above this many bytes (uint8) are gathered on the host by Grain with prefetch,
  # smaller ones are put on the device once (docs/images.md).
  c.data.device_bytes_limit = 1 << 30
  c.data.host_workers = 2

  c.model.generator.z_dim = 32
  c.model.generator.width = 32
  c.model.discriminator.width = 32
  c.model.discriminator.feature_dim = 128
  # Spectral normalization (SN-GAN) of every D kernel, stateless: each D call runs
  # power_iterations steps from a fixed vector (jgen/models/spectral_norm.py); off, D is the
  # plain one, params and numbers alike. 20 steps: on random inits (the slow case) a layer's
  # norm ends ~1% above 1, at worst ~6% (10: up to 11%), for ~15% of a CPU step
  # (docs/decisions.md, "Spectral normalization").
  c.model.discriminator.spectral_norm = False
  c.model.discriminator.power_iterations = 20

  c.optimizer.learning_rate = 2e-4
  c.optimizer.b1 = 0.5

  c.train.num_steps = 10_000
  c.train.batch_size = 64
  c.train.steps_per_dispatch = 250
  c.train.log_every = 500
  c.train.eval_every = 2500
  c.train.checkpoint_every = 2500

  c.eval.num_samples = 26_000  # VEEGAN / PacGAN; pinned for reported numbers
  c.eval.feature_metrics = True  # FID, KID, PR, DC, birthday on classifier features
  c.eval.feature_samples = 5000  # of each set, for precision/recall/density/coverage, birthday
  c.eval.kid_subset_size = 1000
  c.eval.kid_subsets = 20  # of 1,000: 46 GFLOP per evaluation (100 took ~30 s on CPU)
  c.eval.birthday_batch = 100
  c.eval.birthday_batches = 200
  c.eval.birthday_quantile = 0.01
  # The standard Inception FID (jgen/evals/inception.py) with FID Inception weights the user
  # converted once (python -m jgen.inception_weights); '' = off. It compares the first
  # inception_samples samples with as many reference images: ~6 GFLOP an image, for GPU/TPU.
  c.eval.inception_weights = ""
  c.eval.inception_samples = 10_000

  if arg.runlocal:
    c.data.num_train = 4096
    c.model.generator.width = 16
    c.model.discriminator.width = 16
    c.model.discriminator.feature_dim = 32
    c.train.num_steps = 200
    c.train.steps_per_dispatch = 50
    c.train.log_every = 50
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    c.eval.num_samples = 2000
    c.eval.feature_samples = 1000
    c.eval.kid_subset_size = 500
    c.eval.kid_subsets = 10
  c.lock()
  return c
