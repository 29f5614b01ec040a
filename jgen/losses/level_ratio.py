"""The discriminator flow read literally: a level-conditioned D, sampled by annealed Langevin.

The essay: noise has D = 0, and "different noise levels, different D". Taken literally, each
pair of adjacent noise levels has its own discriminator, and a discriminator's optimal logit is
a log density ratio. On the flow-matching path x_t = (1 - t) x0 + t x1 (x0 ~ N(0, I), x1 data;
t = 0 is noise, t = 1 data), with levels t_j = j / K, one network D(x, t_j) is trained per pair
(t_j, t_{j+1}) by logistic regression to tell a point of level t_{j+1} (label 1) from one of
level t_j (label 0). At its optimum D(x, t_j) = log p_{t_{j+1}}(x) - log p_{t_j}(x), and the
ratios telescope (Rhodes et al. 2020, "Telescoping density-ratio estimation"):

  log p_{t_k}(x) = log N(x; 0, I) + sum_{j < k} D(x, t_j)     (up to a constant)

because level 0 is the unit Gaussian, known exactly. The score of every level follows, and
annealed Langevin dynamics (Song and Ermon 2019) samples level after level from noise to data:
at level k, `num_steps` steps x <- x + eps_k grad log p_{t_k}(x) + sqrt(2 eps_k) z with
eps_k = step_size * max(1 - t_k, noise_floor)^2, the step shrinking with the level's noise std
(1 - t_k) down to `noise_floor` at the data.

Cost: every Langevin step evaluates D at all K levels (the unneeded ones masked), so a sample
takes num_steps x K x K evaluations of D and its input gradient.
"""

import jax
import jax.numpy as jnp

from jgen.losses import denoising


def level_index(t_B: jax.Array, num_levels: int) -> jax.Array:
  """The pair index j in [0, K - 1] of levels t in [0, 1] (t = 1 falls in the last pair)."""
  return jnp.minimum(jnp.floor(t_B * num_levels), num_levels - 1).astype(jnp.int32)


def level_ratio_loss(logit, x0: jax.Array, x1: jax.Array, t_B: jax.Array, num_levels: int):
  """(logistic loss, accuracy) of D(x, t_j) telling x1 noised to level t_{j+1} from x1 noised
  to level t_j, with j the pair of each example's level t_B.

  The two points share the data point (the ratio is of the marginals at the two levels) and take
  different noises: x0 and the batch's x0 rolled by one, another example's independent draw.
  """
  j = level_index(t_B, num_levels).astype(jnp.float32)
  lower, upper = j / num_levels, (j + 1.0) / num_levels
  x_upper, _ = denoising.flow_matching_path(x0, x1, upper)
  x_lower, _ = denoising.flow_matching_path(jnp.roll(x0, 1, axis=0), x1, lower)
  positive, negative = logit(x_upper, lower), logit(x_lower, lower)
  loss = 0.5 * (jnp.mean(jax.nn.softplus(-positive)) + jnp.mean(jax.nn.softplus(negative)))
  accuracy = 0.5 * (jnp.mean(positive > 0) + jnp.mean(negative < 0))
  return loss, accuracy


def log_density(logit, x: jax.Array, k, num_levels: int) -> jax.Array:
  """The sum over the batch of log p_{t_k}(x) up to a constant: the unit Gaussian's log
  density plus D(x, t_j) for every j < k."""
  levels = jnp.arange(num_levels, dtype=jnp.float32) / num_levels
  logits_LxB = jax.vmap(lambda t: logit(x, jnp.full(x.shape[:1], t)))(levels)
  below = (jnp.arange(num_levels) < k)[:, None]
  return -0.5 * jnp.sum(x**2) + jnp.sum(jnp.where(below, logits_LxB, 0.0))


def annealed_langevin(logit, noise: jax.Array, key: jax.Array, sampling) -> jax.Array:
  """Samples from `noise` (level 0) through levels 1 .. K (the data), `sampling.num_steps`
  Langevin steps at each; step_size and final_step_size (the noise floor) set eps_k."""
  num_levels, steps = sampling.num_levels, sampling.num_steps
  score = jax.grad(lambda x, k: log_density(logit, x, k, num_levels))

  def level(k, x):
    noise_std = jnp.maximum(1.0 - k / num_levels, sampling.final_step_size)
    eps = sampling.step_size * noise_std**2

    def step(i, x):
      z = jax.random.normal(jax.random.fold_in(key, k * steps + i), x.shape)
      return x + eps * score(x, k) + jnp.sqrt(2.0 * eps) * z

    return jax.lax.fori_loop(0, steps, step, x)

  return jax.lax.fori_loop(1, num_levels + 1, level, noise)
