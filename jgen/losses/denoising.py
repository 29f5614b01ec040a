"""Denoising objectives: what a network is trained to predict on noised data, and the field
its prediction defines for sampling.

Three objectives (`config.objective.name`), each a pure function of the network's output:

  flow_matching       rectified flow / conditional flow matching from a Gaussian source
                      (Lipman et al. 2022; Liu et al. 2022): x_t = (1 - t) x0 + t x1 with
                      x0 ~ N(0, I), x1 data, t ~ U[0, 1]; the network v(x_t, t) regresses the
                      velocity x1 - x0. t = 0 is noise, t = 1 is data.
  noise_prediction    Ho et al. 2020 in continuous time: the variance-preserving schedule
                      alpha_bar(s) = exp(-(b0 s + (b1 - b0) s^2 / 2)), b0 = 0.1, b1 = 20 (the
                      limit of DDPM's linear betas 1e-4..0.02 over 1,000 steps; Song et al.
                      2021), x_s = sqrt(alpha_bar) x + sqrt(1 - alpha_bar) eps, s ~ U[s_min, 1];
                      the network eps(x_s, s) regresses eps. s = 1 is noise, s = 0 is data.
  discriminator_flow  the essay's proposal: a network D(x), no time input, trained so that
                      pure noise scores 0, data 1 and the point x_t of the flow-matching path
                      scores t (binary cross-entropy with the soft label t, whose minimizer is
                      D(x) = E[t | x]), t = 1 - (1 - u)^p (`warp_levels`); samples climb
                      log D / (1 - D) from noise.
  level_ratio         the same idea read literally: one D per pair of adjacent noise levels,
                      whose logits telescope into each level's log density, sampled by
                      annealed Langevin dynamics (jgen/losses/level_ratio.py).

Sampling (`sample_field`, `ancestral`, `ascend`) starts from noise the caller draws, so that
an evaluation can reuse the same noise every time.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jgen.models import denoisers

OBJECTIVES = ("flow_matching", "noise_prediction", "discriminator_flow", "level_ratio")
METHODS = {
  "flow_matching": ("euler", "heun"),
  "noise_prediction": ("euler", "heun", "ancestral"),
  "discriminator_flow": ("ascent",),
  "level_ratio": ("langevin",),
}

VP_BETA_MIN, VP_BETA_MAX = 0.1, 20.0


def vp_alpha_bar(s: jax.Array) -> jax.Array:
  """alpha_bar(s) of the variance-preserving schedule; s in [0, 1], 1 - alpha_bar(1) ~ 1."""
  return jnp.exp(-(VP_BETA_MIN * s + 0.5 * (VP_BETA_MAX - VP_BETA_MIN) * s**2))


def vp_beta(s: jax.Array) -> jax.Array:
  return VP_BETA_MIN + s * (VP_BETA_MAX - VP_BETA_MIN)


def _expand(t_B: jax.Array, x: jax.Array) -> jax.Array:
  return t_B.reshape(t_B.shape + (1,) * (x.ndim - 1))


def flow_matching_path(x0: jax.Array, x1: jax.Array, t_B: jax.Array):
  """(x_t, the velocity target x1 - x0): the straight path from source x0 to data x1."""
  t = _expand(t_B, x0)
  return (1.0 - t) * x0 + t * x1, x1 - x0


def flow_matching_loss(velocity, x0: jax.Array, x1: jax.Array, t_B: jax.Array) -> jax.Array:
  """Mean squared error of `velocity(x_t, t)` against x1 - x0, per coordinate.

  With the pairs (x0, x1) drawn independently this is conditional flow matching: its
  minimizer is the marginal field E[x1 - x0 | x_t], and its minimum is above 0 whenever
  several pairs cross the same x_t. For a deterministic coupling (x1 = T(x0) along straight
  lines that do not cross) the exact field scores exactly 0.
  """
  x_t, target = flow_matching_path(x0, x1, t_B)
  return jnp.mean((velocity(x_t, t_B) - target) ** 2)


def noise_prediction_inputs(x: jax.Array, eps: jax.Array, s_B: jax.Array) -> jax.Array:
  """x_s = sqrt(alpha_bar(s)) x + sqrt(1 - alpha_bar(s)) eps; the target is eps itself."""
  a = _expand(vp_alpha_bar(s_B), x)
  return jnp.sqrt(a) * x + jnp.sqrt(1.0 - a) * eps


def noise_prediction_loss(predict, x: jax.Array, eps: jax.Array, s_B: jax.Array) -> jax.Array:
  return jnp.mean((predict(noise_prediction_inputs(x, eps, s_B), s_B) - eps) ** 2)


def warp_levels(u_B: jax.Array, power: float, data_end: float = 1.0) -> jax.Array:
  """Levels in [0, 1] from uniform u: power > 1 puts more of them near the data, where a
  model must tell a mode from the gap beside it. `data_end` says which end is data: 1 for flow
  matching and the discriminator flow (t = 1 - (1 - u)^power), 0 for noise prediction's s
  (s = 1 - (1 - u^power)). Power 1 gives 1 - (1 - u) either way, bit for bit."""
  if data_end == 1.0:
    return 1.0 - (1.0 - u_B) ** power
  if data_end == 0.0:
    return 1.0 - (1.0 - u_B**power)
  raise ValueError(f"data_end must be 0 or 1, got {data_end}")


def discriminator_flow_loss(logit, x0: jax.Array, x1: jax.Array, t_B: jax.Array):
  """(cross-entropy of D(x_t) against the soft label t, mean D on pure noise, mean D on data).

  Each batch scores the points x_t of the flow-matching path at their level t; D's values on
  the endpoints (pure noise x0, data x1) are reported, not trained on separately.
  """
  x_t, _ = flow_matching_path(x0, x1, t_B)
  logits = logit(x_t)
  loss = jnp.mean(jnp.maximum(logits, 0) - logits * t_B + jnp.log1p(jnp.exp(-jnp.abs(logits))))
  return loss, jax.nn.sigmoid(logit(x0)).mean(), jax.nn.sigmoid(logit(x1)).mean()


@dataclasses.dataclass(frozen=True)
class Sampling:
  """How an evaluation turns noise into samples (`config.sampling`)."""

  method: str  # euler | heun (ODE), ancestral (noise prediction), ascent (discriminator flow),
  # langevin (level ratio)
  num_steps: int  # langevin: steps per level
  step_size: float = 0.0  # ascent: the first step's size; langevin: eps at noise std 1
  # ascent: the last step's (geometric in between; 0: constant); langevin: the noise floor
  final_step_size: float = 0.0
  normalize: bool = False  # ascent: steps along the unit gradient direction
  s_min: float = 1e-3  # noise prediction: the smallest noise level trained and sampled
  num_levels: int = 0  # level ratio: K, the levels t_j = j / K

  def evaluations_per_sample(self, objective: str) -> int:
    """Network evaluations per sample: a gradient of D counts as one (forward and back);
    the ODE of noise prediction adds its final denoising evaluation."""
    if self.method == "langevin":  # every step evaluates D at all K levels
      return self.num_steps * self.num_levels**2
    per_step = 2 if self.method == "heun" else 1
    final = 1 if objective == "noise_prediction" and self.method != "ancestral" else 0
    return per_step * self.num_steps + final


def flow_matching_field(velocity):
  """dx/dt for t from 0 (noise) to 1 (data): the network's velocity itself."""
  return velocity


def noise_prediction_field(predict):
  """The probability-flow ODE of the VP SDE (Song et al. 2021) in s, from 1 down to s_min:
  dx/ds = -beta(s) / 2 * (x - eps(x, s) / sqrt(1 - alpha_bar(s)))."""

  def field(x, s_B):
    beta = _expand(vp_beta(s_B), x)
    sigma = _expand(jnp.sqrt(1.0 - vp_alpha_bar(s_B)), x)
    return -0.5 * beta * (x - predict(x, s_B) / sigma)

  return field


def tweedie(predict, x: jax.Array, s: float) -> jax.Array:
  """The denoised estimate E[x_0 | x_s] = (x - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)."""
  s_B = jnp.full(x.shape[:1], s, jnp.float32)
  a = vp_alpha_bar(jnp.float32(s))
  return (x - jnp.sqrt(1.0 - a) * predict(x, s_B)) / jnp.sqrt(a)


def sample_ode(objective: str, network, noise: jax.Array, sampling: Sampling) -> jax.Array:
  """Deterministic samples from `noise` by Euler or Heun on the objective's ODE.

  `network(x, t_B)` is the time-conditioned model. Noise prediction ends with one more
  evaluation, the denoised estimate at s_min, so that no noise of level s_min (std 0.01, the
  width of a ring8 mode) is left on the samples.
  """
  if objective == "flow_matching":
    times = jnp.linspace(0.0, 1.0, sampling.num_steps + 1)
    return denoisers.integrate(flow_matching_field(network), noise, times, sampling.method)
  times = jnp.linspace(1.0, sampling.s_min, sampling.num_steps + 1)
  x = denoisers.integrate(noise_prediction_field(network), noise, times, sampling.method)
  return tweedie(network, x, sampling.s_min)


def ancestral(predict, noise: jax.Array, key: jax.Array, num_steps: int) -> jax.Array:
  """DDPM ancestral sampling (Ho et al. 2020) on `num_steps` levels s = 1 .. 1/num_steps.

  The betas of the coarse grid follow from alpha_bar (respacing, Nichol and Dhariwal 2021):
  beta_i = 1 - alpha_bar(s_i) / alpha_bar(s_{i+1}); the noise added has the posterior
  variance beta_i (1 - alpha_bar(s_{i+1})) / (1 - alpha_bar(s_i)). The last step goes to
  s = 0 (alpha_bar = 1), where the mean is the denoised estimate and no noise is added.
  Step i draws its noise from fold_in(key, i).
  """
  levels = jnp.linspace(1.0, 0.0, num_steps + 1)

  def step(i, x):
    s, s_next = levels[i], levels[i + 1]
    a, a_next = vp_alpha_bar(s), vp_alpha_bar(s_next)
    beta = 1.0 - a / a_next
    eps = predict(x, jnp.full(x.shape[:1], s, jnp.float32))
    mean = (x - beta / jnp.sqrt(1.0 - a) * eps) / jnp.sqrt(1.0 - beta)
    std = jnp.sqrt(beta * (1.0 - a_next) / (1.0 - a))
    return mean + std * jax.random.normal(jax.random.fold_in(key, i), x.shape)

  return jax.lax.fori_loop(0, num_steps, step, noise)


def ascend(logit, noise: jax.Array, sampling: Sampling) -> jax.Array:
  """The discriminator flow: `num_steps` steps x <- x + eta_k g(x), g = grad_x logit D(x).

  The logit, log D / (1 - D), rather than D itself: D saturates at 1 near the data (and at
  0 far out), where its gradient vanishes before a point has arrived; the log-odds keep a
  gradient, as the log density ratio of discriminator gradient flows does (Ansari et al.
  2021). eta_k falls geometrically from step_size to final_step_size (constant if that is
  0): long steps carry noise to the data, short ones settle it on a maximum of D. With
  `normalize`, g is scaled to unit length per point, so eta_k is the distance moved. Per-
  sample gradients: D scores each point alone.
  """
  grad = jax.grad(lambda x: jnp.sum(logit(x)))
  final = sampling.final_step_size or sampling.step_size
  ratio = final / sampling.step_size

  def step(k, x):
    eta = sampling.step_size * ratio ** (k / max(sampling.num_steps - 1, 1))
    g = grad(x)
    if sampling.normalize:
      axes = tuple(range(1, x.ndim))
      g = g / (jnp.sqrt(jnp.sum(g**2, axis=axes, keepdims=True)) + 1e-12)
    return x + eta * g

  return jax.lax.fori_loop(0, sampling.num_steps, step, noise)


def source_radius(quantile: float = 0.99) -> float:
  """The radius within which a 2D unit Gaussian falls with `quantile` probability:
  sqrt(-2 ln(1 - q)) (its radius is Rayleigh-distributed)."""
  return math.sqrt(-2.0 * math.log(1.0 - quantile))


def reach_travel(means_Kx2: np.ndarray, sigma: float, quantile: float = 0.99) -> float:
  """Distance an ascent must be able to travel to reach the farthest mode from any likely start:
  the source's `quantile` radius plus the farthest mode's distance from the origin plus three
  of its standard deviations (the triangle inequality bounds every start-to-mode distance)."""
  means = np.asarray(means_Kx2, dtype=np.float64)
  if means.ndim != 2 or means.shape[1] != 2:
    raise ValueError(f"the ascent's reach is derived for 2D mixtures, got means {means.shape}")
  farthest = float(np.sqrt((means**2).sum(axis=1)).max())
  return source_radius(quantile) + farthest + 3.0 * sigma


def ascent_travel(sampling: "Sampling") -> float:
  """The total distance a normalized ascent moves: the sum of its geometric step sizes."""
  final = sampling.final_step_size or sampling.step_size
  ratio = final / sampling.step_size
  n = sampling.num_steps
  return float(sum(sampling.step_size * ratio ** (k / max(n - 1, 1)) for k in range(n)))


def with_travel(sampling: "Sampling", travel: float) -> "Sampling":
  """`sampling` with both step sizes scaled (their ratio kept) so that the ascent moves
  `travel` in total."""
  scale = travel / ascent_travel(sampling)
  return dataclasses.replace(
    sampling,
    step_size=sampling.step_size * scale,
    final_step_size=sampling.final_step_size * scale,
  )


def posterior_sample(predict, noise, key, num_steps: int, residual_norm, scale: float):
  """Diffusion posterior sampling (DPS, Chung et al. 2023): ancestral steps, each followed by
  x <- x - scale * grad_x ||y - A(x0_hat(x))||, the gradient of the observation's residual
  norm at the denoised estimate, taken through the network. Training-free: the prior is the
  trained noise predictor, y and A enter only through `residual_norm(x0_hat) -> [B]`.
  """
  levels = jnp.linspace(1.0, 0.0, num_steps + 1)

  def step(i, x):
    s, s_next = levels[i], levels[i + 1]
    a, a_next = vp_alpha_bar(s), vp_alpha_bar(s_next)
    beta = 1.0 - a / a_next

    def norm_and_eps(x):
      eps = predict(x, jnp.full(x.shape[:1], s, jnp.float32))
      x0_hat = (x - jnp.sqrt(1.0 - a) * eps) / jnp.sqrt(a)
      return jnp.sum(residual_norm(x0_hat)), eps

    (_, eps), grad = jax.value_and_grad(norm_and_eps, has_aux=True)(x)
    mean = (x - beta / jnp.sqrt(1.0 - a) * eps) / jnp.sqrt(1.0 - beta)
    std = jnp.sqrt(beta * (1.0 - a_next) / (1.0 - a))
    return mean + std * jax.random.normal(jax.random.fold_in(key, i), x.shape) - scale * grad

  return jax.lax.fori_loop(0, num_steps, step, noise)
