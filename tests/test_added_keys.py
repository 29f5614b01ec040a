"""Keys the configs declare that older records lack (workdir.ADDED_KEYS): a run recorded
without them resumes when the new key keeps what that run did, and is refused when it does not;
the optional keys are settable from the command line."""

import pytest

from configs import dgn, flow, gan, study_generators
from jgen.core import config as config_lib
from jgen.run import fingerprint, workdir


def recorded_without(config, *keys) -> dict:
  """`config` as a record written before `keys` existed."""
  tree = config.to_dict()
  for key in keys:
    *parents, last = key.split(".")
    node = tree
    for parent in parents:
      node = node[parent]
    del node[last]
  return tree


@pytest.mark.parametrize("config_module", [gan, flow, dgn, study_generators])
def test_a_record_without_the_added_keys_resumes_under_their_defaults(config_module):
  config = config_module.get_config()
  flat = workdir.flatten(config.to_dict())
  # A key this config has always declared with another default (flow's train.lr_decay is
  # cosine) never appears missing from its records.
  declared = [key for key, value in workdir.ADDED_KEYS.items() if flat.get(key, ...) == value]
  old = recorded_without(config, *declared)
  assert workdir.config_differences(old, config.to_dict()) == []
  stored = fingerprint.fingerprint(old)
  assert fingerprint.differences(stored, fingerprint.fingerprint(config)) == []


def test_every_added_key_is_declared_by_a_config():
  declared = set()
  for config_module in (gan, flow, dgn, study_generators):
    declared |= set(workdir.flatten(config_module.get_config().to_dict()))
  assert set(workdir.ADDED_KEYS) <= declared, set(workdir.ADDED_KEYS) - declared


def test_an_added_key_set_otherwise_than_the_old_run_is_refused():
  config = gan.get_config()
  config_lib.apply_override(config, "train.update_rule=simultaneous")
  old = recorded_without(config, "train.update_rule")
  assert workdir.config_differences(old, config.to_dict()) == [
    "train.update_rule: 'alternating' -> 'simultaneous'"
  ]
  assert fingerprint.differences(fingerprint.fingerprint(old), fingerprint.fingerprint(config))


def test_population_devices_counts_for_a_population_only():
  single = gan.get_config()
  old = recorded_without(single, "population.devices")
  assert workdir.config_differences(old, single.to_dict()) == []  # one device either way
  population = gan.get_config()
  config_lib.apply_override(population, "population.size=8")
  old = recorded_without(population, "population.devices")
  # The old population ran on one device; the default now splits it over every core.
  assert workdir.config_differences(old, population.to_dict()) == ["population.devices: 1 -> 0"]
  config_lib.apply_override(population, "population.devices=1")
  assert workdir.config_differences(old, population.to_dict()) == []


@pytest.mark.parametrize(
  "override",
  [
    "train.update_rule=simultaneous",
    "train.packing=packs",
    "model.generator.batch_norm=True",
    "model.generator.init=normal_0.02",
    "model.discriminator.init=normal_0.02",
    "eval.bn_refresh_batches=5",
    "data.balanced=True",
  ],
)
def test_the_optional_keys_are_declared_on_the_base_gan_config(override):
  config = gan.get_config()
  config_lib.apply_override(config, override)  # an undeclared key raises here
  key, value = override.split("=")
  node = config
  for part in key.split("."):
    node = node[part]
  assert str(node) == value


def test_a_study_record_whose_nested_run_configs_lack_added_keys_resumes():
  """A study config nests run configs (configs/compare_inverse.py: prior, denoise_prior): a key
  added to a run config is added under each, and counts there as it does in a run's record."""
  from configs import compare_inverse

  config = compare_inverse.get_config()
  old = recorded_without(config, "prior.eval.priors", "denoise_prior.objective.num_levels")
  assert workdir.config_differences(old, config.to_dict()) == []
  config_lib.apply_override(config, "prior.eval.priors=gaussian")
  assert workdir.config_differences(old, config.to_dict()) == [
    "prior.eval.priors: 'gaussian,gmm' -> 'gaussian'"
  ]
