"""Model factories: the trainer builds its generator and discriminator from `config.model`."""

import flax.linen as nn

from jgen.core import registry
from jgen.models import conv
from jgen.models import set_discriminators as sets
from jgen.models.maxout import MaxoutPack
from jgen.models.mlp import INITS, MLP, SampleDiscriminator

DISCRIMINATORS = {
  "mlp": lambda c: SampleDiscriminator(c.width, c.depth),
  "deepsets": lambda c: sets.DeepSets(c.width, c.depth, c.num_moments),
  "attention": lambda c: sets.AttentionPooling(c.width, c.depth, c.num_heads),
  "pack": lambda c: sets.Pack(c.width, c.depth),
  "minibatch_disc": lambda c: sets.MinibatchDiscrimination(
    c.width, c.depth, c.num_kernels, c.kernel_dim
  ),
  "mbstd": lambda c: sets.MinibatchStddev(c.width, c.depth),
  # PacGAN's official D: sets concatenated, maxout layers; any set size, 1 included.
  "maxout_pack": lambda c: MaxoutPack(c.width, c.depth, c.maxout_pieces, c.get("init", "flax")),
}
SET_DISCRIMINATORS = tuple(sorted(name for name in DISCRIMINATORS if name != "mlp"))


def _check_init(path: str, name: str) -> None:
  if name not in INITS:
    raise ValueError(f"{path}={name!r} is not an initializer; valid: {', '.join(INITS)}")


def _require_positive(path: str, value: int) -> None:
  if value < 1:
    raise ValueError(f"{path} must be >= 1, got {value}")


def make_generator(model_config, data_dim: int = 2) -> nn.Module:
  """z_BxZ -> x_BxD: `depth` hidden ReLU layers of `width`, then a linear layer to data_dim.

  Optional keys (a config that does not use them leaves them out): generator.batch_norm
  (BatchNorm before every hidden ReLU, statistics in the "batch_stats" collection),
  generator.init (INITS).
  """
  g = model_config.generator
  _require_positive("model.generator.z_dim", g.z_dim)
  _require_positive("model.generator.width", g.width)
  _require_positive("model.generator.depth", g.depth)
  _require_positive("data_dim", data_dim)
  init = g.get("init", "flax")
  _check_init("model.generator.init", init)
  return MLP(
    g.width, g.depth, out_dim=data_dim, batch_norm=g.get("batch_norm", False), initializer=init
  )


def make_discriminator(model_config) -> nn.Module:
  """x_SxMxD -> logits_S for S sets of M = model.set_size samples."""
  d = model_config.discriminator
  if d.get("spectral_norm", False):
    # An image config run on a 2D mixture: say so rather than train without it.
    raise ValueError(
      "model.discriminator.spectral_norm is implemented for the conv (image) discriminators "
      f"only ({', '.join(conv.CONV_DISCRIMINATORS)}), not for the 2D discriminator "
      f"{d.name!r}; set it to False"
    )
  build = registry.choose("discriminator", d.name, DISCRIMINATORS)
  _require_positive("model.set_size", model_config.set_size)
  _require_positive("model.discriminator.width", d.width)
  _require_positive("model.discriminator.depth", d.depth)
  if d.name == "mlp" and model_config.set_size != 1:
    raise ValueError(
      f"the per-sample discriminator 'mlp' sees one sample, but model.set_size="
      f"{model_config.set_size}; set model.set_size=1 or pick a set discriminator: "
      f"{', '.join(SET_DISCRIMINATORS)}"
    )
  if d.name == "deepsets":
    _require_positive("model.discriminator.num_moments", d.num_moments)
  if d.name == "attention":
    _require_positive("model.discriminator.num_heads", d.num_heads)
    if d.width % d.num_heads:
      raise ValueError(
        f"attention needs model.discriminator.width ({d.width}) divisible by "
        f"model.discriminator.num_heads ({d.num_heads}); change one of them"
      )
  if d.name == "minibatch_disc":
    _require_positive("model.discriminator.num_kernels", d.num_kernels)
    _require_positive("model.discriminator.kernel_dim", d.kernel_dim)
  if d.name == "maxout_pack":
    _require_positive("model.discriminator.maxout_pieces", d.get("maxout_pieces", 0))
  if d.get("init", "flax") != "flax":
    _check_init("model.discriminator.init", d.init)
    if d.name != "maxout_pack":
      raise ValueError(
        f"model.discriminator.init={d.init!r} is implemented for 'maxout_pack' only, not "
        f"{d.name!r}; set it to 'flax'"
      )
  return build(d)


def make_image_generator(model_config, sample_shape: tuple[int, int, int]) -> nn.Module:
  """z_BxZ -> x_BxHxWxC in [0, 1]: the DCGAN-style generator (jgen/models/conv.py)."""
  g = model_config.generator
  _require_positive("model.generator.z_dim", g.z_dim)
  _require_positive("model.generator.width", g.width)
  return conv.ConvGenerator(tuple(sample_shape), g.width)


def make_image_discriminator(model_config) -> nn.Module:
  """x_SxMxHxWxC -> logits_S: a conv discriminator, per-sample (`conv`) or over sets."""
  d = model_config.discriminator
  build = registry.choose("image discriminator", d.name, conv.CONV_DISCRIMINATORS)
  _require_positive("model.set_size", model_config.set_size)
  _require_positive("model.discriminator.width", d.width)
  _require_positive("model.discriminator.feature_dim", d.feature_dim)
  if d.get("spectral_norm", False):
    _require_positive("model.discriminator.power_iterations", d.power_iterations)
  if d.name == "conv" and model_config.set_size != 1:
    others = ", ".join(sorted(set(conv.CONV_DISCRIMINATORS) - {"conv"}))
    raise ValueError(
      f"the per-sample discriminator 'conv' sees one image, but model.set_size="
      f"{model_config.set_size}; set model.set_size=1 or pick a set discriminator: {others}"
    )
  if d.name == "conv_attention" and d.feature_dim % d.num_heads:
    raise ValueError(
      f"conv_attention needs model.discriminator.feature_dim ({d.feature_dim}) divisible by "
      f"model.discriminator.num_heads ({d.num_heads}); change one of them"
    )
  return build(d)
