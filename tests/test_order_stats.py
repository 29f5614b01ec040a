"""The manipulation check of the sampling-order study: hand-computed on small streams."""

import numpy as np
import pytest

from configs import gan
from jgen.data import order_stats, samplers


def test_repeat_fraction_counts_steps_sharing_an_example_with_the_previous_step():
  stream = np.array([[0, 1], [2, 3], [3, 4], [5, 6], [6, 6]])
  # step 1: no; step 2: 3 shared; step 3: no; step 4: 6 shared -> 2 of 4
  assert order_stats.repeat_fraction(stream) == 0.5
  with pytest.raises(ValueError, match="at least 2 steps"):
    order_stats.repeat_fraction(stream[:1])


def test_gaps_are_the_steps_between_consecutive_draws_of_one_example():
  stream = np.array([[0, 1], [0, 2], [2, 2], [1, 0]])
  # 0 at steps 0, 1, 3 -> gaps 1, 2; 1 at 0, 3 -> 3; 2 at 1, 2, 2 -> 1, 0
  assert sorted(order_stats.gaps(stream).tolist()) == [0, 1, 1, 2, 3]
  summary = order_stats.gap_summary(order_stats.gaps(stream))
  assert summary["count"] == 5 and summary["fraction_0"] == 0.2 and summary["fraction_1"] == 0.4
  assert summary["q50"] == 1.0 and summary["mean"] == pytest.approx(7 / 5)


def test_mode_mix_variance_against_the_iid_multinomial():
  labels = np.array([0, 0, 1, 1])  # p = (1/2, 1/2)
  balanced = np.array([[0, 2], [1, 3]] * 10)  # one of each mode in every batch
  streaky = np.array([[0, 1], [2, 3]] * 10)  # every batch a single mode
  iid = 0.25 / 2
  mix = order_stats.mode_mix(balanced, labels, 2)
  assert mix["variance"] == 0.0 and mix["iid_variance"] == iid and mix["ratio"] == 0.0
  mix = order_stats.mode_mix(streaky, labels, 2)
  assert mix["variance"] == 0.25 and mix["ratio"] == pytest.approx(0.25 / iid)


def _stream(kind: str, n: int, b: int, steps: int, **sampler) -> np.ndarray:
  config = gan.get_config()
  config.data.num_train, config.train.batch_size = n, b
  config.sampler.kind = kind
  for key, value in sampler.items():
    config.sampler[key] = value
  return np.stack([row for _, row in samplers.index_stream(config, 0, steps)]), config


def test_the_orders_differ_where_the_study_needs_them_to():
  """The readings separate the orders of the study at small N: epoch shuffling never draws an
  example twice within an epoch, with replacement does, a batch-scope streak repeats its batch."""
  shuffled, config = _stream("epoch_shuffle", 64, 8, 800)
  replaced, _ = _stream("with_replacement", 64, 8, 800)
  streak, _ = _stream("streak", 64, 8, 800, streak_length=8, streak_scope="batch")
  assert order_stats.gap_summary(order_stats.gaps(shuffled))["fraction_0"] == 0.0
  assert order_stats.gap_summary(order_stats.gaps(replaced))["fraction_0"] > 0.02
  # Epoch shuffling can share an example only across an epoch boundary (every 8th step).
  assert order_stats.repeat_fraction(shuffled) <= 1 / 8 + 1e-9
  # With replacement: 1 - (1 - 8/64)^8 = 0.66 of steps share an example with the last step.
  assert order_stats.repeat_fraction(replaced) == pytest.approx(1 - (1 - 8 / 64) ** 8, abs=0.05)
  assert order_stats.repeat_fraction(streak) >= 7 / 8 - 0.01
  labels, modes = order_stats.training_labels(config)
  assert modes == 8 and sorted(set(labels.tolist())) == list(range(8))
  ratio = lambda s: order_stats.mode_mix(s, labels, modes)["ratio"]
  # A batch drawn without replacement has the finite-population correction (N - B) / (N - 1).
  assert ratio(shuffled) == pytest.approx((64 - 8) / (64 - 1), abs=0.08)
  assert ratio(replaced) == pytest.approx(1.0, abs=0.1)


def test_order_stats_refuses_data_without_modes():
  config = gan.get_config()
  config.data.name = "stacked_digits"
  with pytest.raises(ValueError, match="2D mixtures"):
    order_stats.training_labels(config)
