r"""DGN/GLO: reproduce every training image with a learned code per image and a conv G.

A latent table z [N, z_dim] (one learnable z_i per image, optionally projected onto the unit
sphere as in GLO) and a convolutional G are trained jointly by maximum likelihood (or a
perceptual loss) on the first N sklearn digits (8x8, values in [0, 1]). Evaluation reports
per-image reconstruction PSNR and the fraction reconstructed exactly (PSNR >= 40 dB); the
final evaluation adds interpolations and samples from a Gaussian and a Gaussian mixture fitted
to the codes (docs/reconstruct.md).

  python -m jgen.main --config=configs/dgn.py --workdir=runs/dgn
  python -m jgen.main --config=configs/dgn.py:loss=perceptual --workdir=runs/dgn_perceptual
  python -m jgen.main --config=configs/dgn.py:n=256,z_dim=16 --workdir=runs/dgn256

Switches after the colon: n (images), architecture=conv|mlp, z_dim, width (G channels or
units), loss=mse|l1|gaussian_nll|perceptual, features=random_conv|classifier (perceptual only),
priors (the code priors sampled at the end, ';'-separated: gaussian;gmm;knn;slerp;flow),
sphere (GLO projection), runlocal (a tiny smoke run).
"""

import ml_collections

from configs import flow
from jgen.core import config as config_lib
from jgen.run import interface


def get_config(arg=None):
  arg = config_lib.parse_arg(
    arg,
    n=64,
    architecture="conv",
    z_dim=32,
    width=32,
    loss="mse",
    features="random_conv",
    priors="gaussian,gmm",
    sphere=False,
    runlocal=False,
  )
  c = ml_collections.ConfigDict()
  c.trainer = "dgn"
  c.seed = 0
  c.deterministic = True  # XLA flags for bit-reproducible GPU runs; no-op on CPU

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"
  c.data.num_train = arg.n  # the first N digits; digits 1500.. are held out

  c.sampler = ml_collections.ConfigDict()
  c.sampler.kind = "epoch_shuffle"
  c.sampler.streak_length = 4
  c.sampler.streak_scope = "slot"
  c.sampler.streak_dist = "fixed"
  c.sampler.streak_base = "epoch_shuffle"
  c.sampler.path = ""

  c.model = ml_collections.ConfigDict()
  c.model.z_dim = arg.z_dim
  c.model.architecture = arg.architecture  # conv | mlp (jgen/models/dgn.py)
  c.model.width = arg.width
  c.model.num_upsamples = 2  # conv: 8x8 images from a 2x2 map
  c.model.extra_convs = 0  # conv
  c.model.depth = 2  # mlp: hidden layers

  c.latent = ml_collections.ConfigDict()
  c.latent.init_std = 1.0
  c.latent.project = "sphere" if arg.sphere else "none"
  c.latent.optimizer = ml_collections.ConfigDict()
  c.latent.optimizer.name = "adam"
  c.latent.optimizer.learning_rate = 3e-3
  c.latent.optimizer.b1 = 0.9
  c.latent.optimizer.b2 = 0.999
  c.latent.optimizer.momentum = 0.9

  c.loss = ml_collections.ConfigDict()
  c.loss.name = arg.loss
  c.loss.features = arg.features  # perceptual: random_conv | classifier
  c.loss.pixel_weight = 0.0  # perceptual: + pixel_weight * mse
  c.loss.min_log_sigma = -7.0  # gaussian_nll: sigma >= e^-7 (about 1e-3)

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.momentum = 0.9

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 4000
  c.train.batch_size = 64
  c.train.lr_decay = "cosine"  # none | cosine (to 0 at num_steps; both optimizers)
  c.train.steps_per_dispatch = interface.UNROLLED_STEPS  # unrolled (interface.dispatch_for)
  c.train.log_every = 500
  c.train.eval_every = 1000
  c.train.checkpoint_every = 2000
  c.train.keep_checkpoints = 2

  c.eval = ml_collections.ConfigDict()
  c.eval.exact_psnr = 40.0  # dB on [0, 1] images: "reconstructed exactly"
  c.eval.final_extras = True  # interpolations and samples from fitted densities at the end
  c.eval.num_samples = 1000  # samples drawn from each fitted density
  c.eval.gmm_components = 10
  # Code priors sampled at the end (gaussian, gmm, knn, slerp: jgen/evals/code_priors.py).
  c.eval.priors = arg.priors.replace(";", ",")
  c.eval.knn_k = 5  # knn: a code and its k nearest codes, mixed with Dirichlet(1) weights
  # Classifier Frechet distance to the held-out digits 1500.. and memorization rates.
  c.eval.held_out_metrics = False
  # The prior of the generator's `sample` call (what jgen.evaluate and studies score): one of
  # the code priors or "flow", the code flow trained at the end under eval.code_flow_dir
  # (empty: WORKDIR/code_flow is the default, which the scorer sets).
  c.eval.sample_prior = "gaussian"
  c.eval.code_flow_dir = ""

  if "flow" in c.eval.priors.split(","):
    # flow matching on the code table (jgen/trainers/code_flow.py): configs/flow.py's TimeMLP
    # 256 x 3, Euler x 50, cosine decay, 5,000 steps.
    c.code_flow = flow.get_config()
    c.code_flow.train.num_steps = 5000
  if arg.runlocal:
    c.data.num_train = 16
    c.model.width = 16
    c.train.batch_size = 16
    c.train.num_steps = 100
    c.train.log_every = 50
    c.train.eval_every = 50
    c.train.checkpoint_every = 50
    c.eval.num_samples = 100
    c.eval.gmm_components = 2
  c.lock()
  return c
