"""Data by name: the 2D mixtures, or image datasets (stacked digits offline; TFDS by random access).

An image dataset has `name`, `sample_shape` (H, W, C), `num_modes` (0 if it has no modes),
`training_set(key, num_train)` (a pytree that lives on the device) and
`gather(data, indices) -> float32 [B, H, W, C] in [0, 1]`, run inside the jitted step.
"""

from jgen.core import registry
from jgen.data import mixtures, stacked, tfds_source

IMAGE_TYPES = (stacked.StackedDigits, tfds_source.TfdsImages)
ImageData = stacked.StackedDigits | tfds_source.TfdsImages


def _tfds(name):
  def build(data_config):
    return tfds_source.load(name, data_config)

  return build


IMAGES = {
  "stacked_digits": lambda data_config: stacked.stacked_digits(),
  "mnist": _tfds("mnist"),
  "stacked_mnist": _tfds("stacked_mnist"),
  "cifar10": _tfds("cifar10"),
  "celeb_a": _tfds("celeb_a"),
}


def get_data(data_config):
  """The mixture or image dataset `data_config.name` names; unknown names list every choice."""
  table = {name: (lambda c, build=build: build()) for name, build in mixtures.MIXTURES.items()}
  return registry.choose("data", data_config.name, {**table, **IMAGES})(data_config)


def is_image_data(name: str) -> bool:
  return name in IMAGES
