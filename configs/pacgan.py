r"""PacGAN's 2D protocol exactly (Lin et al. 2018, Table 1): m = 1 is the plain GAN.

Every choice follows the official code, github fjxmlzn/PacGAN, `synthetic_data_experiments/`
(2DRing_GAN&PacGAN and 2DGrid_GAN&PacGAN, whose config.py differ only in the mixture):

- data: 8 modes on the unit circle, std 0.01 (2DRing config.py), or the 5x5 grid at
  {-4,-2,0,2,4}^2, std 0.05 (2DGrid config.py); `num_sample` 100,000 points, drawn once.
- packs: the training set is a fixed table of 100,000 packs whose m slots are independent
  with-replacement draws from those points (PacGAN/pacgan/datasets.py GaussianPackingMixture),
  iterated in a new random order every epoch, 100 packs per step (streams.py ShuffledScheme,
  config.py batch_size), so one epoch is 1,000 steps; `train.packing=packs`.
- G: z ~ N(0, I_2) per slot (pacgan_task.py create_models, circle_gaussian_mixture with one
  mode, r 0, std 1) -> 4 x [Linear 400 without bias -> BatchNorm -> ReLU] -> Linear 2
  (pacgan_task.py create_model_brick, use_bias=False but for the last layer). The generator
  runs once per pack slot, so each slot has its own batch statistics; the population
  statistics move by 0.05 towards their mean over slots every step (create_models:
  bn_updates). BatchNorm is blocks' (blocks/bricks/bn.py): epsilon 1e-4 inside the batch
  stdev, scale 1 and shift 0 at init, population statistics at evaluation.
- D: the m samples concatenated in slot order (bricks.py compute_losses, axis=1) -> 3 x
  LinearMaxout(200 units, 5 pieces) -> Linear 1 (pacgan_task.py create_model_brick;
  405,201 parameters at m = 1).
- init: N(0, 0.02) weights, zero biases everywhere (config.py weights_init_std, biases_init).
- loss: softplus, G non-saturating (bricks.py compute_losses).
- updates: simultaneous, both gradients at the same parameters on the same batch
  (ali_algorithm from the ALI code, used by pacgan_task.py create_main_loop).
- optimizer: blocks' Adam, learning_rate 1e-4, beta1 0.8, beta2 left at its default 0.001
  (config.py, pacgan_task.py create_main_loop). blocks writes betas as one minus the usual
  decay (blocks/algorithms Adam: mean_t = beta1 * grad + (1 - beta1) * mean), so in optax's
  terms b1 = 0.2 and b2 = 0.999. (configs/gan.py's b1 = 0.8 is the other reading.)
- length: 400 epochs x 1,000 steps = 400,000 steps (config.py num_epoch).
- evaluation: 2,500 samples from a fixed z (extensions.py GraphLogger, config.py
  num_log_figure_sample) through the generator with population statistics; before it, the
  training-set monitor applies 50 more statistic updates from generator batches (pacgan_task.py
  DataStreamMonitoring(..., updates=bn_updates) over ShuffledScheme(5000, 100)), here
  `eval.bn_refresh_batches`. Modes, high-quality fraction and reverse KL as extensions.py
  MetricLogger counts them (jgen/evals/modes.py).

The one known difference: optax's Adam adds epsilon 1e-8 to the bias-corrected sqrt(v), blocks'
to the uncorrected one (at most 3e-7 vs 1e-8 in effect, in the first steps).

  python -m jgen.main --config=configs/pacgan.py --workdir=runs/pacgan_ring_m1
  python -m jgen.main --config=configs/pacgan.py:data=grid25,m=2 --workdir=runs/pacgan_grid_m2
  python -m jgen.main --config=configs/pacgan.py:runlocal --workdir=runs/pacgan_local

Switches after the colon: data=ring8|grid25, m=1|2|3|4 (pack size), runlocal (a tiny run).
Table 1 over seeds: configs/study_pacgan_table1.py.
"""

from configs import gan
from jgen.core import config as config_lib

PACK_SIZES = (1, 2, 3, 4)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, data="ring8", m=1, runlocal=False)
  if arg.m not in PACK_SIZES:
    raise ValueError(f"m={arg.m} is not a PacGAN pack size; valid: {PACK_SIZES}")
  c = gan.base_config(arg, discriminator="maxout_pack", set_size=arg.m)
  with c.unlocked():
    c.model.generator.batch_norm = True
    c.model.generator.init = "normal_0.02"
    c.model.discriminator.maxout_pieces = 5
    c.model.discriminator.init = "normal_0.02"
    c.train.packing = "packs"
    c.train.update_rule = "simultaneous"
    c.eval.bn_refresh_batches = 50
  c.optimizer.b1 = 0.2
  c.optimizer.b2 = 0.999
  c.train.batch_size = 100  # packs
  c.train.num_steps = 400_000
  c.train.steps_per_dispatch = 1000
  c.train.log_every = 1000
  c.train.eval_every = 10_000
  c.train.checkpoint_every = 10_000
  if arg.runlocal:
    c.data.num_train = 10_000
    c.train.num_steps = 400
    c.train.steps_per_dispatch = 100
    c.train.log_every = 100
    c.train.eval_every = 200
    c.train.checkpoint_every = 200
  return c
