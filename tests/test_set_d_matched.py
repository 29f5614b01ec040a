"""The set-D study at matched capacity: widths matched by parameter count, the two-group
statistics, and the pipeline at toy size."""

import json

import jax
import numpy as np
import pytest

from configs import study_set_d_matched
from jgen.studies import effects, runner
from jgen.studies import set_d_matched as study


def test_parameter_count_is_what_init_makes():
  config = study_set_d_matched.get_config("runlocal")
  run = study.cell_config(config, {"name": "x", "data": "ring8", "discriminator": "pack"})
  from jgen import models

  model = models.make_discriminator(run.model)
  params = model.init(jax.random.key(0), np.zeros((1, run.model.set_size, 2), np.float32))
  assert study.parameter_count(run) == sum(leaf.size for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("kind", ["mlp", "pack"])
def test_the_matched_width_is_the_closest_count_to_the_target(kind):
  config = study_set_d_matched.get_config("runlocal")
  run = runner.cell_config(config.base, config.study.settings.discriminators[kind])
  target = study.target_parameters(config)
  width = study.matched_width(run, target)
  counts = {w: study.parameter_count(study._with_width(run, w)) for w in range(8, 80)}
  best = min(counts, key=lambda w: (abs(counts[w] - target), w))
  assert width == best, (width, best, counts[width], counts[best], target)
  assert abs(counts[width] - target) / target < 0.05


def test_two_group_difference_on_hand_made_groups():
  low, high = [1.0, 2.0, 3.0, 2.0] * 5, [5.0, 6.0, 7.0, 6.0] * 5
  far = effects.two_group_difference(high, low, resamples=2000, permutations=2000)
  assert far["difference"] == pytest.approx(4.0)
  assert far["interval_95"][0] > 3.0 and far["interval_95"][1] < 5.0
  assert far["p_value"] == pytest.approx(1 / 2001)  # no relabelling is as extreme
  same = effects.two_group_difference(low, list(reversed(low)), 2000, 2000)
  assert same["difference"] == 0.0 and same["p_value"] == 1.0
  with pytest.raises(ValueError, match="two groups of >= 2 finite values"):
    effects.two_group_difference([1.0], [2.0, 3.0])


def test_the_toy_study_compares_each_set_d_with_the_per_sample_d(tmp_path):
  config = study_set_d_matched.get_config("runlocal")
  with config.unlocked():
    config.study.data = "ring8"
    config.study.seeds = 2
    for key in ("num_steps", "steps_per_dispatch", "eval_every", "log_every", "checkpoint_every"):
      config.base.train[key] = 100
    config.base.evals.distance.every = 100
    config.base.population.devices = 1  # the test process has one CPU device
  report = study.run_study(config, str(tmp_path))
  widths = {cell["discriminator"]: cell["parameters"] for cell in report["cells"]}
  target = report["target_parameters"]
  assert widths["deepsets"] == target
  assert all(abs(count - target) / target < 0.05 for count in widths.values()), widths
  assert [(c["discriminator"], c["reference"]) for c in report["comparisons"]] == [
    ("deepsets", "mlp"),
    ("pack", "mlp"),
  ]
  primary = report["comparisons"][0]
  assert primary["primary"] and primary["modes"]["holm_p"] == primary["modes"]["p_value"]
  for cell in report["cells"]:
    assert cell["seeds"] == 2 and cell["sliced_w1"]["count"] == 2
  saved = json.loads((tmp_path / "report.json").read_text())
  assert saved["cells"] == json.loads(json.dumps(report["cells"]))
  assert "| ring8 | deepsets |" in (tmp_path / "report.md").read_text()
