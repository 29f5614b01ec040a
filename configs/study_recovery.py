r"""The recovery study: once a generator has lost modes, does it come back, and what brings it back?

  python -m jgen.study --config=configs/study_recovery.py --workdir=runs/recovery
  python -m jgen.study --config=configs/study_recovery.py:runlocal --workdir=runs/recovery_local

Stage 1 records collapse cases: single traced runs of `base` (seeds first_seed, first_seed+1,
...), each stopped at its first mode drop (the only detector on; `collapse.on_trigger=stop`),
until `study.num_cases` seeds have one. One case per seed keeps the cases independent. Stage 2
replays each case to the evaluation at which the drop was detected (checked against the
recorded trace) and branches from that state for `study.window` steps under every intervention
of `study.interventions`, evaluating every `study.eval_every` steps (jgen/studies/recovery.py
says what the report computes and how "regain" is defined).

The base run: configs/collapse_demo.py's setting (ring8, 100,000 points, batch 100, Adam with
b1 0.8, evaluations and checkpoints every 500 steps) with G 4x64 and D 3x64 and a learning rate
of 1e-3, chosen in a pilot (seeds 100-103, disjoint from the study's) because it drops modes in a
few thousand steps on a CPU: at lr 1e-4 no run had a mode-drop case in 15,000 steps (4 at width
64, 1 at width 128; all but one held 8 modes at the end), while at 1e-3 each of 3 runs at width
64 had 2-4 mode-drop cases within 10,000 steps (about 2,000 steps/s on this 2-core CPU, shared).
The full-size collapse_demo model also drops modes, but at 58 steps/s.

`study.settings` says what each intervention changes, applied at the case's trigger step:
`overrides` (config keys set for the window), `reset` (parts of the train state initialized
afresh from the run's own INIT streams: the run's step-0 D, zeroed optimizer moments) and
`seed_offset` (the window's data order, noise and training-set draw come from seed +
seed_offset). A part whose shapes the overrides change (the set D) starts fresh too. All
branches are evaluated on the recorded run's fixed z.

`runlocal` runs the whole pipeline small (3 cases, a 1,000-step window) to test the code.
"""

import ml_collections

from configs import collapse_demo
from jgen.core import config as config_lib

LEARNING_RATE = 1e-3
INTERVENTIONS = "none,with_replacement,fresh_d,set_d,reset_optimizers,lr_cut,reseed"


def _setting(overrides=None, reset="", seed_offset=0) -> dict:
  return {"overrides": overrides or {}, "reset": reset, "seed_offset": seed_offset}


def settings(learning_rate: float) -> dict:
  return {
    "none": _setting(),  # the recorded run continued
    # The textbook alternative to epoch shuffling (the essay's contrast). At 100,000 points it
    # changes which points a batch holds, hardly how its modes mix: `reseed` tells the two apart.
    "with_replacement": _setting({"sampler": {"kind": "with_replacement"}}),
    "fresh_d": _setting(reset="d_params,d_opt_state"),
    # DeepSets of the same width, sets of 4: its parameters have other shapes, so they start
    # fresh (with their optimizer state); G and its optimizer state are kept.
    "set_d": _setting({"model": {"discriminator": {"name": "deepsets"}, "set_size": 4}}),
    "reset_optimizers": _setting(reset="g_opt_state,d_opt_state"),
    "lr_cut": _setting({"optimizer": {"learning_rate": learning_rate / 10}}),
    # The seventh, a placebo: the same method with the window's randomness drawn anew (data
    # order, z, and the training set's draw from the same mixture). Every other intervention
    # also perturbs a chaotic trajectory; this says how often a perturbation alone brings the
    # modes back, so that an intervention is read against it as well as against `none`.
    "reseed": _setting(seed_offset=1000),
  }


def base_config() -> ml_collections.ConfigDict:
  c = collapse_demo.get_config()
  c.model.generator.width = 64
  c.model.discriminator.width = 64
  c.optimizer.learning_rate = LEARNING_RATE
  c.train.num_steps = 12_000  # a run with no drop by then gives no case
  c.train.keep_checkpoints = 2  # the case hard-links the one it starts from
  # Only the mode-drop detector, and the run stops at its first firing: each seed gives at
  # most one case, the first drop of >= 2 modes below the best evaluation since the run armed.
  c.collapse.kl_rise = 0.0
  c.collapse.diversity_drop = 0.0
  c.collapse.d_gap = 0.0
  c.collapse.max_cases = 1
  c.collapse.on_trigger = "stop"
  return c


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False)
  c = ml_collections.ConfigDict()
  c.study_kind = "recovery"  # the study, by name (jgen/studies/__init__.py)
  c.base = base_config()
  c.study = ml_collections.ConfigDict()
  # Cases wanted, one per seed: seeds are recorded until this many have one. 64 fits about 30
  # CPU-minutes on a 2-core CPU (measured: about 10 s to record a seed, 14 s to branch a case
  # under the 7 interventions).
  c.study.num_cases = 64
  c.study.first_seed = 0
  c.study.max_seeds = 120  # give up (and report fewer cases) after this many seeds
  c.study.window = 3000  # steps each branch runs from the trigger
  c.study.eval_every = 250  # evaluations in the window (2,500 samples each, PacGAN's protocol)
  c.study.interventions = INTERVENTIONS
  c.study.settings = ml_collections.ConfigDict(settings(LEARNING_RATE))
  if arg.runlocal:
    c.study.num_cases = 3
    c.study.max_seeds = 8
    c.study.window = 1000
  c.lock()
  return c
