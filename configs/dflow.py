r"""The essay's discriminator flow on a 2D mixture: D(noise) = 0, D(data) = 1, climb D's gradient.

One network D(x), no time input (jgen/models/denoisers.py Critic: SiLU MLP 3 x 256), trained on
the points x_t = (1 - t) x0 + t x1 of the straight path from unit Gaussian noise x0 to a data
point x1, with the soft label t: pure noise scores 0, data 1, partly noised data its level
(cross-entropy, so D(x) learns E[t | x]; jgen/losses/denoising.py), with levels drawn mostly
near the data. Sampling starts from Gaussian noise and takes `sampling.num_steps` = 200 steps
up the gradient direction of D's log-odds, of length falling from `sampling.step_size` (0.1)
to `sampling.final_step_size` (0.001), so that different starting noises flow to different
samples.
Data, order, batch, evaluation and seeds as configs/gan.py and configs/flow.py; docs/flow.md
reports whether it covers the modes.

  python -m jgen.main --config=configs/dflow.py --workdir=runs/dflow
  python -m jgen.main --config=configs/dflow.py:data=grid25 --workdir=runs/dflow_grid
  python -m jgen.main --config=configs/dflow.py --config.objective.level_power=1 ...

`:objective=level_ratio` is the idea read literally: a level-conditioned D, one logistic
regression per pair of 16 adjacent levels, whose logits telescope into each level's log density,
sampled by annealed Langevin dynamics (10 steps per level; jgen/losses/level_ratio.py). Its D is
128 wide: every Langevin step evaluates it at all 16 levels (2,560 evaluations per sample).

  python -m jgen.main --config=configs/dflow.py:objective=level_ratio,data=grid25 --workdir=W

Switches after the colon: data=ring8|grid25, objective=discriminator_flow|level_ratio, runlocal
(a tiny smoke run).
"""

from configs import flow
from jgen.core import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, data="ring8", objective="discriminator_flow", runlocal=False)
  c = flow.base_config(
    config_lib.parse_arg(
      f"data={arg.data},runlocal={arg.runlocal}",
      data="ring8",
      objective=arg.objective,
      runlocal=False,
    )
  )
  if arg.objective == "level_ratio":
    with c.unlocked():
      c.objective.level_power = 1.0  # every pair of levels trained alike
      c.sampling.method = "langevin"
      c.sampling.num_steps = 10  # per level
      c.sampling.step_size = 0.1  # eps at noise std 1, shrinking with the level's std squared
      c.sampling.final_step_size = 0.05  # the noise floor: about a grid25 mode's width
      if not arg.runlocal:
        c.model.width = 128
    return c
  with c.unlocked():
    # Most training levels near the data (t = 1 - (1 - u)^3): with uniform levels D scored
    # data 0.72 on average and ascent put 2.5% of samples on a mode; with these, 0.98 and 100%
    # (ring8, docs/flow.md).
    c.objective.level_power = 3.0
    c.sampling.method = "ascent"
    c.sampling.num_steps = 200
    c.sampling.step_size = 0.1  # unit-direction steps from 0.1 down to 0.001
    c.sampling.final_step_size = 0.001
    c.sampling.normalize = True
  return c
