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
- optimizer: blocks' Adam, learning_rate 1e-4, beta1 0.8, beta2 left at its default
  (config.py, pacgan_task.py create_main_loop). What beta1 = 0.8 means depends on the blocks
  version installed, which the official code does not pin: blocks at or after commit aa064519
  (2017-01-24, on master 2017-01-25 by pull request 1176) writes Adam the usual way,
  mean_t = beta1 * mean + (1 - beta1) * grad, default beta2 0.999: optax b1 = 0.8
  (`adam=blocks_v8`, the default). Older blocks wrote one minus the usual decay,
  mean_t = beta1 * grad + (1 - beta1) * mean, default beta2 0.001: optax b1 = 0.2
  (`adam=blocks_v7`). b2 is 0.999 in both. The default follows the published code run as
  its README says (ALI's requirements: blocks' development version, which had the usual
  form from 2017-01-25 on); docs/pacgan.md has the record and what stays uncertain.
- length: 400 epochs x 1,000 steps = 400,000 steps (config.py num_epoch).
- evaluation: 2,500 samples from a fixed z (extensions.py GraphLogger, config.py
  num_log_figure_sample) through the generator with population statistics; before it, the
  training-set monitor applies 50 more statistic updates from generator batches (pacgan_task.py
  DataStreamMonitoring(..., updates=bn_updates) over ShuffledScheme(5000, 100)), here
  `eval.bn_refresh_batches`. Modes and high-quality fraction as extensions.py MetricLogger
  counts them; reverse KL is the paper's KL(histogram of high-quality samples over modes ||
  uniform), which MetricLogger does not log (it logs the histogram's entropy H, and KL =
  log K - H, and a JSD to uniform) (jgen/evals/modes.py).

The one known difference: optax's Adam adds epsilon 1e-8 to the bias-corrected sqrt(v), blocks'
to the uncorrected one (at most 3e-7 vs 1e-8 in effect, in the first steps).

  python -m jgen.main --config=configs/pacgan.py --workdir=runs/pacgan_ring_m1
  python -m jgen.main --config=configs/pacgan.py:data=grid25,m=2 --workdir=runs/pacgan_grid_m2
  python -m jgen.main --config=configs/pacgan.py:runlocal --workdir=runs/pacgan_local

  python -m jgen.main --config=configs/pacgan.py:adam=blocks_v7 --workdir=runs/pacgan_ring_m1_v7

Switches after the colon: data=ring8|grid25, m=1|2|3|4 (pack size), adam=blocks_v8|blocks_v7
(which blocks version's Adam reads beta1 = 0.8: optax b1 = 0.8 or 0.2), runlocal (a tiny run).
Table 1 over seeds: configs/study_pacgan_table1.py.
"""

from configs import gan
from jgen.core import config as config_lib

PACK_SIZES = (1, 2, 3, 4)
# beta1 = 0.8 in PacGAN's config.py as optax's b1, under each blocks version's Adam: v8 is
# blocks at or after aa064519 (the Adam paper's v8 parametrization), v7 blocks before it.
ADAM_B1 = {"blocks_v8": 0.8, "blocks_v7": 0.2}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, data="ring8", m=1, adam="blocks_v8", runlocal=False)
  if arg.m not in PACK_SIZES:
    raise ValueError(f"m={arg.m} is not a PacGAN pack size; valid: {PACK_SIZES}")
  if arg.adam not in ADAM_B1:
    raise ValueError(f"adam={arg.adam} is not a blocks Adam version; valid: {', '.join(ADAM_B1)}")
  c = gan.base_config(arg, discriminator="maxout_pack", set_size=arg.m)
  with c.unlocked():
    c.model.generator.batch_norm = True
    c.model.generator.init = "normal_0.02"
    c.model.discriminator.maxout_pieces = 5
    c.model.discriminator.init = "normal_0.02"
    c.train.packing = "packs"
    c.train.update_rule = "simultaneous"
    c.eval.bn_refresh_batches = 50
  c.optimizer.b1 = ADAM_B1[arg.adam]
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
