"""Inverse problems on digits: a trained DGN prior, Deep Image Prior and a denoising prior.

configs/compare_inverse.py.
1. Trains (or resumes) the DGN prior under W/dgn_prior (an ordinary configs/dgn.py run).
2. Degrades test digits (held-out digits 1500.. never trained on, and as many training digits)
   by each task, with jgen/losses/inverse.py's operators: denoise (Gaussian noise), inpaint (a
   mask per image), superres (average pooling).
3. DGN prior: z starts at the table code whose G(z) best explains y, then Adam on z alone
   (`dgn_z`), then also G's parameters (`dgn_z+G`, a copy per image).
4. DIP: a fresh skip net per image from a fixed noise input, fit to the same y with the DIP
   trainer's data loss and input perturbation; `dip` is the PSNR at the last step, `dip_best`
   the best PSNR over its evaluations (an oracle early stop that a real user cannot have: it
   reads the clean image).
5. Denoising prior, training-free: a noise predictor (configs/flow.py's noise prediction, a
   time-conditioned U-Net) trained under W/denoise_prior on the DGN prior's training digits,
   then diffusion posterior sampling (DPS, Chung et al. 2023) for each y; `dps` is the PSNR of
   the mean of `dps_samples` posterior samples, `dps_1` that of the first sample alone (a single
   estimate like the other columns, at no extra sampling).
Each (image group, task) is a cell of the study (jgen/studies/runner.py): it ends with
W/cells/<group>-<task>/outcome.json (its mean PSNR per method, and each digit's) and is never
rerun, and after every cell W/table.md and W/table.json (mean PSNR per task, method and image
group, and each method's paired difference over digits to the best other column:
jgen/studies/inverse_report.py) are rewritten. W/examples_<group>_<task>.png shows clean,
degraded, dgn_z, dgn_z+G, dip, dps_1 and dps.

The methods use the DGN's and the noise predictor's own pieces (G's decoder, the code table, the
denoising network), so this study imports those two trainers rather than choosing by name.
"""

import collections
import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from jgen.core import registry, rng
from jgen.data import digits
from jgen.datasets import ImageDataset
from jgen.evals import fidelity
from jgen.losses import denoising, inverse
from jgen.models.dip import SkipNet
from jgen.run import checkpoints, interface
from jgen.studies import inverse_report, runner
from jgen.trainers import denoise
from jgen.trainers import dgn as dgn_trainer
from jgen.viz import imgrid

METHODS = inverse_report.METHODS
GROUPS = ("held_out", "train")  # digits never trained on, and as many training digits
REPORT_FILE = "table.md"
OUTCOME_KEYS = ("psnr", "psnr_per_digit")  # what the table reads of a cell's outcome.json


@dataclasses.dataclass(frozen=True)
class Settings:
  """The config's numbers that the jitted fits close over (hashable: a static argument)."""

  factor: int
  z_steps: int
  z_learning_rate: float
  g_steps: int
  g_learning_rate: float
  dip_input: int
  dip_input_scale: float
  dip_input_noise_std: float
  dip_learning_rate: float
  dip_steps: int
  dip_eval_every: int
  dps_steps: int
  dps_scale: float
  dps_samples: int

  @classmethod
  def from_config(cls, config):
    return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls)})


def operator(task: str, mask, factor: int) -> inverse.Operator:
  """The operator of `task`; inpaint's mask differs per image, so it travels as an array."""
  if task == "inpaint":
    return inverse.mask(mask)
  return inverse.make_operator(task, key=None, shape_HxW=None, factor=factor)


def data_loss(task: str, prediction, y, mask, factor: int):
  """The DIP trainer's data term for one image [1, H, W, C] against its observation y."""
  return inverse.data_loss(operator(task, mask, factor), prediction, y)


def make_problems(config, images, root):
  """Per task: (y [K, ...], masks [K, H, W, 1]) from the TRAIN_SET stream, task-salted.

  Each image of inpaint has its own mask; the other tasks' masks are all ones (unused)."""
  key = rng.stream_key(root, rng.Stream.TRAIN_SET)
  problems = {}
  for t, task in enumerate(config.tasks.split(",")):
    registry.choose("task", task, dict.fromkeys(inverse.TASKS))
    k_noise, k_mask = jax.random.split(jax.random.fold_in(key, t))
    shape = images.shape[1:3]
    if task == "inpaint":
      masks = jnp.stack(
        [
          inverse.make_mask(config.mask, jax.random.fold_in(k_mask, i), shape, config.keep_fraction)
          for i in range(len(images))
        ]
      )
    else:
      masks = jnp.ones((len(images), *shape, 1), jnp.float32)
    std = config.noise_std if task == "denoise" else 0.0
    y = inverse.degrade(operator(task, masks, config.factor), images, k_noise, std)
    problems[task] = (y, masks)
  return problems


# Steps per dispatch, unrolled: the rule for convolutions in a loop (interface.dispatch_for).
UNROLL = interface.UNROLLED_STEPS


def _fit(loss_one, params_K, opt, steps: int, key=None):
  """Adam on K independent problems at once (vmapped); `loss_one(params, i, key)`."""
  state = jax.vmap(opt.init)(params_K)
  index = jnp.arange(jax.tree.leaves(params_K)[0].shape[0])

  def one_step(params, state, i, step):
    step_key = None if key is None else jax.random.fold_in(jax.random.fold_in(key, i), step)
    grads = jax.grad(loss_one)(params, i, step_key)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  @jax.jit
  def chunk(params, state, first):
    for offset in range(UNROLL):
      params, state = jax.vmap(one_step, in_axes=(0, 0, 0, None))(
        params, state, index, first + offset
      )
    return params, state

  for first in range(0, steps, UNROLL):
    params_K, state = chunk(params_K, state, first)
    yield first + UNROLL, params_K


def _last(fits):
  return collections.deque(fits, maxlen=1)[0][1]


def dgn_fit(dgn, g_params, latents, task, y_K, masks_K, settings):
  """(z-only reconstructions, z+G reconstructions) [K, H, W, C] of the observations y_K.

  z starts at the table code whose G(z) explains y best; the z+G stage fine-tunes a copy of
  G per image from the z-only result.
  """
  factor = settings.factor
  candidates = dgn_trainer.reconstruct(dgn, g_params, latents)

  def best_code(y, mask):
    errors = jax.vmap(lambda c: data_loss(task, c[None], y[None], mask[None], factor))(candidates)
    return latents[jnp.argmin(errors)]

  z_K = jax.jit(jax.vmap(best_code))(y_K, masks_K)

  def decode(params, z):
    return dgn.decode(params, dgn.constrain(z[None]))

  def loss_one(pz, i, _):
    params, z = pz
    return data_loss(task, decode(params, z), y_K[i][None], masks_K[i][None], factor)

  k = len(y_K)
  params_K = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (k, *leaf.shape)), g_params)
  # Stage 1: z alone (G's learning rate is 0 there).
  z_only_opt = optax.multi_transform(
    {"g": optax.set_to_zero(), "z": optax.adam(settings.z_learning_rate)}, ("g", "z")
  )
  params_K, z_K = _last(_fit(loss_one, (params_K, z_K), z_only_opt, settings.z_steps))
  z_only = jax.vmap(lambda p, z: jnp.clip(decode(p, z)[0], 0, 1))(params_K, z_K)
  both_opt = optax.multi_transform(
    {"g": optax.adam(settings.g_learning_rate), "z": optax.adam(settings.z_learning_rate)},
    ("g", "z"),
  )
  params_K, z_K = _last(_fit(loss_one, (params_K, z_K), both_opt, settings.g_steps))
  both = jax.vmap(lambda p, z: jnp.clip(decode(p, z)[0], 0, 1))(params_K, z_K)
  return z_only, both


def dip_fit(net, key, task, y_K, masks_K, clean_K, settings):
  """(outputs at the last step [K, ...], best PSNR over evaluations [K]) of DIP per image."""
  k = len(y_K)
  shape = (1, *clean_K.shape[1:-1], settings.dip_input)
  z_K = settings.dip_input_scale * jax.random.uniform(jax.random.fold_in(key, 0), (k, *shape))
  params_K = jax.vmap(net.init)(jax.random.split(jax.random.fold_in(key, 1), k), z_K)

  def loss_one(params, i, step_key):
    noise = jax.random.normal(step_key, shape)
    prediction = net.apply(params, z_K[i] + settings.dip_input_noise_std * noise)
    return data_loss(task, prediction, y_K[i][None], masks_K[i][None], settings.factor)

  apply_K = jax.jit(jax.vmap(net.apply))
  best = jnp.full((k,), -jnp.inf)
  opt = optax.adam(settings.dip_learning_rate)
  fits = _fit(loss_one, params_K, opt, settings.dip_steps, jax.random.fold_in(key, 2))
  for step, params_K in fits:
    if step % settings.dip_eval_every == 0:
      best = jnp.maximum(best, fidelity.psnr(apply_K(params_K, z_K)[:, 0], clean_K))
  return apply_K(params_K, z_K)[:, 0], best


@dataclasses.dataclass(frozen=True, eq=False)
class DigitsSource:
  """The DGN prior's training digits (the first `num_train` of scikit-learn's 8x8 digits, one
  channel) as an image source, so that the denoising prior trains on the same images through
  the one data interface (jgen/datasets); no classifier, so no modes."""

  name: str = "digits"
  sample_shape: tuple = (8, 8, 1)
  num_modes: int = 0

  def training_set(self, key, num_train: int):
    del key  # a fixed subset, as the DGN prior's (trainers/dgn.py training_images)
    return jnp.asarray(digits.load_digits()[0][:num_train])

  def gather(self, train_set, indices_B):
    return train_set[indices_B]


def train_dgn_prior(config, work_dir: str):
  """(the trained DGN prior's Dgn, its state) of config.prior, trained under W/dgn_prior."""
  prior_dir = os.path.join(work_dir, "dgn_prior")
  dgn_trainer.train_and_evaluate(config.prior, prior_dir)
  dgn, _, _ = dgn_trainer.build(config.prior)
  like = dgn_trainer.init_state(dgn, rng.root_key(config.prior.seed))
  ckpts = checkpoints.Checkpoints(prior_dir, keep=config.prior.train.keep_checkpoints)
  state = ckpts.restore(ckpts.latest_step(), like=like)
  ckpts.close()
  return dgn, state


def train_denoise_prior(config, work_dir: str):
  """(the trained noise predictor's Denoiser, its parameters) of config.denoise_prior."""
  data = ImageDataset(DigitsSource())
  prior_dir = os.path.join(work_dir, "denoise_prior")
  denoise.train_and_evaluate(config.denoise_prior, prior_dir, data=data)
  den, root, _ = denoise.build(config.denoise_prior, data=data)
  ckpts = checkpoints.Checkpoints(prior_dir, keep=config.denoise_prior.train.keep_checkpoints)
  state = ckpts.restore(ckpts.latest_step(), like=den.init_state(root))
  ckpts.close()
  return den, state.params


def dps_fit(den, params, key, task, y_K, masks_K, image_shape, settings):
  """(the mean of `dps_samples` diffusion posterior samples, the first of those samples) per
  image, each [K, H, W, C] (DPS, Chung et al. 2023): the noise predictor's ancestral steps
  guided by the gradient of the residual norm ||y - A(x0_hat)|| (jgen/losses/denoising.py
  posterior_sample)."""
  apply = functools.partial(den.network.apply, params)

  def one(y, mask, key):
    def residual_norm(x0_hat):
      prediction = (x0_hat + 1.0) / 2.0  # the model's [-1, 1] back to pixels
      residual = operator(task, mask[None], settings.factor)(prediction) - y[None]
      return jnp.sqrt(jnp.sum(residual**2, axis=(1, 2, 3)))

    noise = jax.random.normal(jax.random.fold_in(key, 0), (settings.dps_samples, *image_shape))
    x = denoising.posterior_sample(
      apply,
      noise,
      jax.random.fold_in(key, 1),
      settings.dps_steps,
      residual_norm,
      settings.dps_scale,
    )
    samples = jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
    return samples.mean(axis=0), samples[0]

  keys = jax.random.split(key, len(y_K))
  return jax.jit(jax.vmap(one))(y_K, masks_K, keys)


def cells(config) -> list[dict]:
  """One cell per image group and task, group-major: {name, group, task}."""
  return [
    {"name": f"{group}-{task}", "group": group, "task": task}
    for group in GROUPS
    for task in runner.axis(config, "tasks", inverse.TASKS)
  ]


def run_study(config, work_dir: str) -> dict:
  """Fits every unfinished cell by each method (training or resuming the priors first),
  rewriting the table after each; returns it (jgen/studies/inverse_report.py report):
  {"psnr": {"<group>/<task>": {method: mean PSNR}}, "paired": ..., "paired_single": ...}."""
  settings = Settings.from_config(config)
  if settings.dip_steps % settings.dip_eval_every or settings.dip_eval_every % UNROLL:
    raise ValueError(f"dip_steps must be a multiple of dip_eval_every, a multiple of {UNROLL}")
  grid = cells(config)
  images = digits.load_digits()[0]
  k = config.num_images
  groups = {
    "held_out": jnp.asarray(images[dgn_trainer.HELD_OUT_START : dgn_trainer.HELD_OUT_START + k]),
    "train": jnp.asarray(images[:k]),
  }
  root = rng.root_key(config.seed)
  net = SkipNet(
    out_channels=1, channels=tuple(config.dip_channels), skip_channels=config.dip_skip_channels
  )
  priors, problems = {}, {}  # made when the first unfinished cell needs them

  def fit_cell(cell, _, cell_dir):
    if not priors:
      priors["dgn"], priors["state"] = train_dgn_prior(config, work_dir)
      priors["denoiser"], priors["params"] = train_denoise_prior(config, work_dir)
    dgn, state, prior, prior_params = (priors[k] for k in ("dgn", "state", "denoiser", "params"))
    group, task = cell["group"], cell["task"]
    clean_K = groups[group]
    if group not in problems:  # a task's key is salted by its place in config.tasks
      problems[group] = make_problems(config, clean_K, jax.random.fold_in(root, len(group)))
    y_K, masks_K = problems[group][task]
    z_only, both = dgn_fit(dgn, state.g_params, state.latents, task, y_K, masks_K, settings)
    dip_out, dip_best = dip_fit(
      net, jax.random.fold_in(root, 1000), task, y_K, masks_K, clean_K, settings
    )
    dps, dps_1 = dps_fit(
      prior,
      prior_params,
      jax.random.fold_in(root, 2000),
      task,
      y_K,
      masks_K,
      clean_K.shape[1:],
      settings,
    )
    degraded = inverse.degraded_view(operator(task, masks_K, config.factor), y_K, config.factor)
    psnrs = {
      "input": fidelity.psnr(degraded, clean_K),
      "dgn_z": fidelity.psnr(z_only, clean_K),
      "dgn_z+G": fidelity.psnr(both, clean_K),
      "dip": fidelity.psnr(dip_out, clean_K),
      "dip_best": dip_best,
      "dps_1": fidelity.psnr(dps_1, clean_K),
      "dps": fidelity.psnr(dps, clean_K),
    }
    psnr = {m: float(jnp.mean(psnrs[m])) for m in METHODS}
    per_digit = {m: [float(v) for v in np.asarray(psnrs[m])] for m in METHODS}
    logging.info("%s/%s: %s", group, task, psnr)
    shown = min(8, k)
    imgrid.save_grid(
      os.path.join(work_dir, f"examples_{group}_{task}.png"),
      [list(np.asarray(a[:shown])) for a in (clean_K, degraded, z_only, both, dip_out, dps_1, dps)],
      ["clean", "degraded", "dgn_z", "dgn_z+G", "dip", "dps_1", "dps"],
      f"{group} digits, {task}",
    )
    return {"cell": cell, "psnr": psnr, "psnr_per_digit": per_digit}

  def write_report(finished):
    results = inverse_report.report(finished)
    runner.write_json(os.path.join(work_dir, "table.json"), results, indent=1)
    text = inverse_report.table_markdown(results, config)
    runner.write_text(os.path.join(work_dir, REPORT_FILE), text)
    return results

  return runner.run_cells(
    work_dir,
    grid,
    [None] * len(grid),  # its cells are fits, not runs
    fit_cell,
    write_report,
    "Inverse problems",
    study_config=config,
    outcome_keys=OUTCOME_KEYS,
  )
