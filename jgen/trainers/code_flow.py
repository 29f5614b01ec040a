"""A learned prior over a DGN's codes: flow matching on the code table (GLANN, Hoshen et al. 2019).

The DGN run writes its codes to W/codes.npy; this trains jgen's denoising trainer on them as a
dataset (data.name = "codes", jgen/datasets/codes.py) under W/code_flow/ (so it resumes like any
run), and draws new codes from it; G turns them into images (jgen/trainers/dgn.py final_extras,
prior "flow"). The flow's settings are the DGN config's `code_flow` section (configs/flow.py's
config, with its width and steps: configs/dgn.py:priors=...,flow), on the DGN's seed.
"""

import os

import jax
import ml_collections
import numpy as np

from jgen.core import config as config_lib
from jgen.core import rng
from jgen.run import checkpoints, workdir
from jgen.trainers import denoise


def config_for(
  flow_base: ml_collections.ConfigDict, codes_path: str, num_codes: int, dgn_config
) -> ml_collections.ConfigDict:
  """`flow_base` (a flow config: the DGN config's `code_flow` section) on the code table at
  `codes_path`, with the DGN's seed."""
  steps = flow_base.train.num_steps
  config = ml_collections.ConfigDict(flow_base.to_dict())
  config.data.path = codes_path
  settings = {
    "seed": dgn_config.seed,
    "data.name": "codes",
    "data.num_train": num_codes,
    "train.batch_size": min(100, num_codes),
    "train.num_steps": steps,
    "train.steps_per_dispatch": min(500, steps),
    "train.log_every": steps,
    "train.eval_every": steps,
    "train.checkpoint_every": steps,
    "eval.num_samples": min(1000, 10 * num_codes),
    "eval.sample_batch": min(1000, 10 * num_codes),
    "collapse.trace": False,
  }
  for path, value in settings.items():
    config_lib.apply_override(config, f"{path}={value}")
  config.lock()
  return config


def sample_codes(
  flow_base, codes: np.ndarray, work_dir: str, dgn_config, num_samples: int
) -> np.ndarray:
  """Trains (or resumes) the flow over `codes` in work_dir/code_flow and returns
  `num_samples` new codes, float32 [num_samples, z_dim]."""
  path = os.path.join(work_dir, "codes.npy")
  np.save(path, np.asarray(codes, np.float32))
  config = config_for(flow_base, path, len(codes), dgn_config)
  flow_dir = os.path.join(work_dir, "code_flow")
  denoise.train_and_evaluate(config, flow_dir)
  return sample_trained(flow_dir, None, num_samples)


def sample_trained(flow_dir: str, key: jax.Array | None, num_samples: int) -> np.ndarray:
  """`num_samples` codes from the finished code flow in `flow_dir` (its newest intact
  checkpoint, under the config it was trained with), drawn with `key`; None: the flow's own
  sampling key, a stream apart from its evaluation's."""
  stored = workdir.read_config(flow_dir)
  if stored is None:
    raise ValueError(
      f"{flow_dir} has no code flow (no readable config.json): finish the DGN run with "
      "eval.priors including flow, which trains it there"
    )
  config = ml_collections.ConfigDict(stored)
  den, root, _ = denoise.build(config)
  state, step, _ = checkpoints.restore_newest_intact(
    flow_dir, config.train.keep_checkpoints, den.init_state(root)
  )
  if step != config.train.num_steps:
    total = config.train.num_steps
    raise ValueError(
      f"the code flow in {flow_dir} stopped at step {step} of {total}: rerun the DGN run"
    )
  if key is None:
    key = jax.random.fold_in(rng.stream_key(root, rng.Stream.EVAL), 1)
  return np.asarray(den.sample(state, key, num_samples), np.float32)
