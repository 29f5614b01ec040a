r"""The preregistered sampling-order study (docs/preregistration/sampling_order.md).

Does a more repetitive order of the training data cause more mode collapse? Each cell is a
block of the design (discriminator x optimizer x training-set size N) trained as one population:
`study.seeds` seeds under each of the orders, every order on the same seeds. The report gives,
per block, the manipulation check (how the orders' batches differ, measured from the index
streams), the endpoint per order, the preregistered one-sided trend test (Holm across the
primary blocks), effect sizes with intervals and the achieved power.

  python -m jgen.study --config=configs/study_sampling_order_trend.py --workdir=runs/order_trend
  python -m jgen.study --config=configs/study_sampling_order_trend.py:runlocal --workdir=runs/ot

The full design (9 blocks x 5 orders x 64 seeds x 20k steps) took about 2 h on the project's
2-core CPU (README "Results"); `runlocal` runs the whole pipeline in a few minutes: its numbers
test the code, not the question. `:gpu` is the same design with 256 seeds per order, for an
accelerator (population.devices 0: every device).

The values below are the preregistration's and must not change after its confirmatory runs;
`population.devices` is pinned to 2 so that the command reproduces the committed numbers bit
for bit on any machine (a member's bits depend on how many members share a device).
"""

import ml_collections

from configs import gan
from jgen.core import config as config_lib

# What each order sets, and its repetitiveness score (fixed before the runs).
ORDERS = {
  "epoch_shuffle": {"sampler": {"kind": "epoch_shuffle"}},
  "shuffle_once": {"sampler": {"kind": "shuffle_once"}},
  "with_replacement": {"sampler": {"kind": "with_replacement"}},
  "streak8": {"sampler": {"kind": "streak", "streak_length": 8, "streak_scope": "batch"}},
  "streak64": {"sampler": {"kind": "streak", "streak_length": 64, "streak_scope": "batch"}},
}
SCORES = {
  "epoch_shuffle": 0,
  "shuffle_once": 0,
  "with_replacement": 1,
  "streak8": 2,
  "streak64": 3,
}
OPTIMIZERS = {
  "adam": {"optimizer": {"name": "adam", "learning_rate": 1e-4, "b1": 0.8, "b2": 0.999}},
  "sgd": {"optimizer": {"name": "sgd", "learning_rate": 2e-3}},  # the pilot's rule
}
DISCRIMINATORS = {
  "per_sample": {"model": {"discriminator": {"name": "mlp"}, "set_size": 1}},
  "set": {"model": {"discriminator": {"name": "deepsets"}, "set_size": 4}},
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, gpu=False)
  c = ml_collections.ConfigDict()
  c.study_kind = "sampling_order_trend"
  c.base = gan.base_config(
    config_lib.parse_arg(None, data="ring8", runlocal=False), discriminator="mlp", set_size=1
  )
  c.base.seed = 0  # seeds 0-63: the confirmatory seeds (the pilot's were 10000 up)
  c.base.collapse.trace = False  # populations are not traced
  c.base.population.devices = 0 if arg.gpu else 2
  c.base.model.generator.width = 64
  c.base.model.generator.depth = 3
  c.base.model.discriminator.width = 64
  c.base.model.discriminator.depth = 2
  c.base.train.batch_size = 8
  c.base.train.num_steps = 20_000
  c.base.train.steps_per_dispatch = 500
  c.base.train.eval_every = 1000
  c.base.train.log_every = 1000
  c.base.train.checkpoint_every = 5000

  c.study = ml_collections.ConfigDict()
  c.study.num_train = "8,64,100000"  # 8: one point per mode (data.balanced)
  c.study.primary_optimizers = "adam,sgd"  # per-sample D: the primary (Holm) family
  c.study.secondary_optimizers = "adam"  # set D: the secondary family
  c.study.orders = ",".join(ORDERS)
  # At N = 8 a batch of 8 is the whole training set under every order but with_replacement.
  c.study.one_per_mode_batch = 4
  c.study.seeds = 256 if arg.gpu else 64
  c.study.endpoint_evals = 5  # primary endpoint: mean modes over the last 5 evaluations
  c.study.permutations = 20_000
  c.study.bootstrap_resamples = 10_000
  c.study.equivalence_bound = 0.3  # modes; "no effect" if the 90% interval lies inside
  c.study.power_differences = "0.5,1.0"  # extreme differences (modes) whose power is reported
  c.study.saturated_outside = (0.2, 0.8)  # N=8's baseline collapse range to stay in the family
  c.study.manipulation_steps = 2000  # steps of each order's index stream for the check
  c.study.settings = ml_collections.ConfigDict(
    {
      "orders": ORDERS,
      "scores": SCORES,
      "optimizers": OPTIMIZERS,
      "discriminators": DISCRIMINATORS,
    }
  )

  if arg.runlocal:
    c.study.num_train = "8,64"
    c.study.primary_optimizers = "adam"
    c.study.secondary_optimizers = "adam"
    c.study.seeds = 4
    c.study.permutations = 2000
    c.study.bootstrap_resamples = 500
    c.study.manipulation_steps = 200
    c.base.train.num_steps = 600
    c.base.train.steps_per_dispatch = 300
    c.base.train.eval_every = 100
    c.base.train.log_every = 100
    c.base.train.checkpoint_every = 300
    c.base.eval.num_samples = 500
  c.lock()
  return c
