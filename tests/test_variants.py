"""Same-shaped hyper-parameter variants as members of one population (jgen/run/variants.py)."""

import jax
import numpy as np
import pytest
from conftest import tiny_config

from jgen.core import digest
from jgen.run import loop, variants
from jgen.trainers import gan as gan_trainer

LR_AND_ORDER = "optimizer.learning_rate=1e-4|1e-3;sampler.kind=epoch_shuffle|with_replacement"


def _train(config, steps=20):
  gan, root, data = gan_trainer.build(config)
  state, _ = loop.run_chunk(gan, gan_trainer.init_state(gan, root), root, data, steps)
  return gan, root, state


def test_members_run_their_variant_with_paired_seeds():
  config = tiny_config(**{"population.size": 4, "population.variants": LR_AND_ORDER})
  _, _, population = _train(config)
  parsed = variants.parse(config)
  assert [parsed.variant_of(i) for i in range(4)] == [0, 0, 1, 1]
  learning_rates = population.g_opt_state.hyperparams["learning_rate"]
  np.testing.assert_allclose(learning_rates, [1e-4, 1e-4, 1e-3, 1e-3], rtol=1e-6)
  for member in range(4):
    alone_config = parsed.member_config(config, member)
    assert alone_config.seed == member % 2
    _, _, alone = _train(alone_config)
    # Up to vmap's rounding (as for seeds-only populations, README "Populations").
    for got, want in zip(
      jax.tree.leaves(population.g_params), jax.tree.leaves(alone.g_params), strict=True
    ):
      np.testing.assert_allclose(got[member], want, rtol=1e-4, atol=1e-6)


def test_each_member_draws_exactly_its_variants_data_order():
  config = tiny_config(**{"population.size": 4, "population.variants": LR_AND_ORDER})
  gan, root, _ = gan_trainer.build(config)
  parsed = variants.parse(config)
  for step in (0, 17):
    drawn = jax.vmap(gan.sample_indices, in_axes=(0, None), axis_name=variants.MEMBER_AXIS)(
      root, step
    )
    for member in range(4):
      alone_gan, alone_root, _ = gan_trainer.build(parsed.member_config(config, member))
      assert np.array_equal(drawn[member], alone_gan.sample_indices(alone_root, step))
  # the two orders differ, and the paired seeds of one variant differ too
  assert not np.array_equal(drawn[0], drawn[2]) and not np.array_equal(drawn[0], drawn[1])


def test_a_variant_population_is_deterministic():
  config = tiny_config(**{"population.size": 2, "population.variants": "optimizer.b1=0.5|0.9"})
  first, second = _train(config)[2], _train(config)[2]
  assert digest.tree_digest(first) == digest.tree_digest(second)
  b1 = first.d_opt_state.hyperparams["b1"]
  np.testing.assert_allclose(b1, [0.5, 0.9])
  assert not np.array_equal(*jax.tree.leaves(first.d_params)[0])  # the variants diverge


def test_a_decayed_population_holds_each_members_rate_and_its_updates_decay():
  # train.lr_decay chains a schedule after the optimizer: the members' rates must still reach
  # the optimizer's state, and the schedule's count must scale the updates towards 0.
  overrides = {"population.size": 2, "population.variants": "optimizer.learning_rate=1e-4|1e-3"}
  config = tiny_config(**overrides, **{"train.lr_decay": "cosine", "train.num_steps": 20})
  gan, _, state = _train(config, steps=20)
  inject_state, schedule_state = state.g_opt_state
  np.testing.assert_allclose(inject_state.hyperparams["learning_rate"], [1e-4, 1e-3], rtol=1e-6)
  assert np.array_equal(schedule_state.count, [20, 20])
  grads = jax.tree.map(lambda p: np.ones_like(p[0]), state.g_params)
  one = jax.tree.map(lambda leaf: leaf[0], state)
  updates, _ = gan.g_optimizer.update(grads, one.g_opt_state, one.g_params)
  assert all(np.allclose(u, 0.0) for u in jax.tree.leaves(updates))  # cosine at num_steps: 0


def test_without_variants_the_optimizer_state_holds_no_hyperparameters():
  # The state's structure is fixed at init: the steps run in a lax.scan, whose carry keeps it.
  gan, root, _ = gan_trainer.build(tiny_config(**{"population.size": 2}))
  state = jax.eval_shape(lambda: gan_trainer.init_state(gan, root))
  assert not hasattr(state.g_opt_state, "hyperparams")


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"population.variants": "model.set_size=1|4"}, "cannot vary within one population"),
    ({"population.variants": "optimizer.learning_rate=1e-4"}, "population.size >= 2"),
    (
      {"population.size": 4, "population.variants": "optimizer.b1=0.5|0.8;optimizer.b2=0.9"},
      "same number of values",
    ),
    ({"population.size": 3, "population.variants": "optimizer.b1=0.5|0.8"}, "multiple of"),
    (
      {
        "population.size": 2,
        "optimizer.name": "sgd",
        "population.variants": "optimizer.b1=0.5|0.8",
      },
      "not a hyper-parameter of optimizer.name='sgd'",
    ),
    (
      {"population.size": 2, "population.variants": "sampler.kind=epoch_shuffle|full_batch"},
      "cannot be a variant",
    ),
    ({"population.size": 2, "population.variants": "optimizer.b1=high|low"}, "float values"),
    ({"population.size": 2, "population.variants": "optimizer.b1"}, "is not 'path=v1|v2|...'"),
    (
      {"population.size": 2, "population.variants": "sampler.kind=epoch_shuffle|zigzag"},
      "unknown sampler.kind 'zigzag'",
    ),
  ],
)
def test_impossible_variants_fail_with_the_fix(overrides, message):
  with pytest.raises(ValueError, match=message.replace("|", r"\|").replace(".", r"\.")):
    gan_trainer.Gan.from_config(tiny_config(**overrides))
