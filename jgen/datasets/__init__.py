"""The one data interface: every dataset a trainer, replay or study can name.

A dataset (`get_dataset(config.data)`) answers every question the rest of jgen asks of
data, so no code asks which kind it holds:

  name, sample_shape, num_modes       what one sample is; 0 modes when none are defined
  on_host                             True: batches are read on the host (`host_batches`);
                                      False: `training_set` lives on the device and the
                                      jitted step `gather`s its batch by index
  training_set(key, num_train)        the fixed training set (a pytree) drawn once per seed
  gather(train_set, indices)          float32 [B, *sample_shape], inside jit
  host_batches(...), from_host(batch) the host path (large TFDS data)
  evaluate(samples, eval_config)      one member's evaluation row (host values)
  picture(path, samples, title, row)  the evaluation's picture
  curves, progress_text(row)          what metrics.png and the progress line show

Rows of every dataset with modes carry `modes`, `mode_counts` and `reverse_kl`, the KL of
the generated mode histogram to the data's (PacGAN's reverse KL); detectors, cases, replay
and studies read that one field. Image rows also keep the name `kl` that docs/images.md
documents.

Named evaluators (`config.evals`, each on its own schedule and sample count) are
evaluators.py: they score any trainer's `sample` call against a dataset.

Layering: built from jgen.data (sources, samplers), jgen.evals (metrics) and jgen.viz
(pictures); imported by trainers, the run loop's callers, replays and studies.
"""

from jgen.core import registry
from jgen.data import mixtures
from jgen.datasets.codes import CodesData
from jgen.datasets.images import ImageDataset, image_dataset
from jgen.datasets.mixture import MixtureData

Dataset = MixtureData | ImageDataset | CodesData

IMAGE_NAMES = ("digits", "stacked_digits", "mnist", "stacked_mnist", "cifar10", "celeb_a")


def _builders() -> dict:
  table = {name: MixtureData.from_config for name in mixtures.MIXTURES}
  table["codes"] = CodesData.from_config  # a DGN's learned codes (datasets/codes.py)
  for name in IMAGE_NAMES:
    table[name] = lambda data_config, name=name: image_dataset(name, _unbalanced(data_config))
  return table


def _unbalanced(data_config):
  if data_config.get("balanced", False):
    raise ValueError(
      f"data.balanced applies to the 2D mixtures ({', '.join(mixtures.MIXTURES)}), not to "
      f"{data_config.name}; set data.balanced=False"
    )
  return data_config


def get_dataset(data_config) -> Dataset:
  """The dataset `data_config.name` names; an unknown name lists every choice."""
  return registry.choose("data", data_config.name, _builders())(data_config)


def is_image_data(name: str) -> bool:
  return name in IMAGE_NAMES
