"""`python -m jgen.indices`: the printed stream is the one the sampler gives the trainer."""

import json
import os
import pathlib
import subprocess
import sys

import forked_commands
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import gan
from jgen.core import rng
from jgen.data import samplers

ROOT = pathlib.Path(__file__).resolve().parents[1]


INDICES = ["jgen.indices", "--config=configs/gan.py"]
STREAM = ["--from_step=3", "--num_steps=4", "--config.data.num_train=500"]
COMMANDS = {  # name: what follows `python -m`
  "stream": [*INDICES, *STREAM],
  "with_replacement": [*INDICES, *STREAM, "--config.sampler.kind=with_replacement"],
  "bad kind": [*INDICES, "--config.sampler.kind=nope"],
  "misspelt key": [*INDICES, "--config.sampler.streak_lenght=2"],
  "positional": [*INDICES, "extra"],
  "no config": ["jgen.indices"],
}


@pytest.fixture(scope="module")
def printed():
  """Each of COMMANDS' result, every command in a process of its own (forked from one
  interpreter: tests/forked_commands.py)."""
  results = forked_commands.run(list(COMMANDS.values()), env={"JAX_PLATFORMS": "cpu"})
  return dict(zip(COMMANDS, results, strict=True))


def printed_rows(result):
  assert result.returncode == 0, result.stderr
  lines = [json.loads(line) for line in result.stdout.splitlines()]
  return [line["step"] for line in lines], np.array([line["indices"] for line in lines])


def in_process_rows(from_step, num_steps, **sampler_fields):
  config = gan.get_config()
  config.data.num_train = 500
  for name, value in sampler_fields.items():
    config.sampler[name] = value
  sample = samplers.make_sampler(
    config.sampler, num_examples=500, batch_size=config.train.batch_size
  )
  steps = jnp.arange(from_step, from_step + num_steps, dtype=jnp.int32)
  return np.asarray(jax.vmap(sample, in_axes=(None, 0))(rng.root_key(config.seed), steps))


def test_printed_stream_equals_the_in_process_sampler_and_is_all_it_prints(printed):
  result = printed["stream"]
  steps, rows = printed_rows(result)  # every line of stdout is one row
  assert result.stderr == "", result.stderr
  assert steps == [3, 4, 5, 6]
  assert rows.shape == (4, 100)
  np.testing.assert_array_equal(rows, in_process_rows(3, 4))


def test_an_override_changes_the_stream_as_it_would_for_main(printed):
  _, rows = printed_rows(printed["with_replacement"])
  np.testing.assert_array_equal(rows, in_process_rows(3, 4, kind="with_replacement"))
  assert not np.array_equal(rows, in_process_rows(3, 4))


def test_bad_settings_exit_nonzero_with_the_fix_and_no_traceback(printed):
  # A setting the library refuses (ValueError) and an override of a key the config lacks (the
  # command line's own check). The library's other refusals are ValueErrors too, which the
  # command reports the same way: tests/test_samplers.py names each one's fix.
  for name, message in [
    ("bad kind", "valid choices: epoch_shuffle, explicit, full_batch"),
    ("misspelt key", 'Did you mean "streak_length"'),
  ]:
    result = printed[name]
    assert result.returncode == 1 and result.stderr.startswith("jgen.indices: error: "), name
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""


def test_fresh_samples_have_no_stream_to_print():
  config = gan.get_config()
  config.data.fresh_samples = True
  with pytest.raises(ValueError, match="fresh_samples"):
    next(samplers.index_stream(config, 0, 3))


def test_chunked_rows_equal_the_stream_whatever_the_chunking():
  config = gan.get_config()
  config.data.num_train, config.train.batch_size = 500, 16
  sample = samplers.make_sampler(config.sampler, num_examples=500, batch_size=16)
  expected = np.asarray(
    jax.vmap(sample, in_axes=(None, 0))(rng.root_key(0), jnp.arange(5, 15, dtype=jnp.int32))
  )
  # 10 steps in chunks of 4: 4, 4 and a padded 2.
  steps, rows = zip(*samplers.index_stream(config, 5, 10, chunk_steps=4), strict=True)
  assert list(steps) == list(range(5, 15))
  np.testing.assert_array_equal(np.stack(rows), expected)
  assert list(samplers.index_stream(config, 5, 0)) == []


def test_a_closed_pipe_is_not_an_error():
  head = subprocess.run(
    f"{sys.executable} -m jgen.indices --config=configs/gan.py --num_steps=5000 | head -1",
    shell=True, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
    text=True, timeout=300,
  )  # fmt: skip
  assert json.loads(head.stdout)["step"] == 0 and head.stderr == "", head.stderr


def test_a_positional_argument_or_a_missing_config_is_one_line(printed):
  result = printed["positional"]
  assert result.returncode == 1 and result.stdout == ""
  assert (
    result.stderr
    == "jgen.indices: error: unexpected arguments: extra (flags take the form --name=value)\n"
  )
  result = printed["no config"]
  assert result.returncode == 1
  assert result.stderr.startswith("jgen.indices: error: --config is required"), result.stderr
