r"""A run that collapses on a laptop CPU in about a minute, to see a case recorded and replayed.

The per-sample baseline (configs/gan.py) at its defaults, seed 2: in the 5-seed
runs of the README, seeds 2, 3 and 4 lost modes between steps 10k and 15k
(seed 2: 7 modes at 10k, 3 at 15k). Evaluating and checkpointing every 500 steps
lets the detectors see it and gives the case a nearby start. Evaluation and
checkpoints only observe the run: its trajectory is the same as with gan.py.

  python -m jgen.main --config=configs/collapse_demo.py --workdir=runs/collapse_demo
  python -m jgen.cases --workdir=runs/collapse_demo
  python -m jgen.replay --case=runs/collapse_demo/cases/<ID>
  python -m jgen.replay --case=runs/collapse_demo/cases/<ID> \
      --override=config.model.discriminator.name=deepsets --override=config.model.set_size=4
"""

from configs import gan
from jgen.core import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, data="ring8", runlocal=False)
  config = gan.base_config(arg, discriminator="mlp", set_size=1)
  config.seed = 2
  config.train.num_steps = 15_000
  config.train.log_every = 500
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  config.train.keep_checkpoints = 4
  config.collapse.after_steps = 1000
  return config
