"""Mode metrics against hand-computed answers, and the jgen.evaluate CLI."""

import functools
import json
import math
import os
import subprocess
import sys

import forked_commands
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jgen.data.mixtures import get_mixture
from jgen.evals import modes

RING8 = get_mixture("ring8")
GRID25 = get_mixture("grid25")


def _at_modes(mixture, counts):
  """Samples exactly at the means, counts[k] of them at mode k."""
  return np.repeat(mixture.means_Kx2, counts, axis=0).astype(np.float32)


def _hand_reverse_kl(counts):
  p = np.asarray(counts, np.float64) / np.sum(counts)
  p = p[p > 0]
  return float(np.sum(p * np.log(p * len(counts))))


@pytest.mark.parametrize("mixture", [RING8, GRID25], ids=lambda m: m.name)
def test_samples_at_every_mean_cover_all_modes_uniformly(mixture):
  m = modes.mode_metrics(_at_modes(mixture, [100] * mixture.num_modes), mixture)
  assert int(m["modes"]) == mixture.num_modes
  assert float(m["high_quality"]) == 1.0
  assert float(m["reverse_kl"]) == pytest.approx(0.0, abs=1e-6)
  assert m["mode_counts"].tolist() == [100] * mixture.num_modes


@pytest.mark.parametrize("mixture", [RING8, GRID25], ids=lambda m: m.name)
def test_all_samples_at_one_mode_give_log_k(mixture):
  counts = [0] * mixture.num_modes
  counts[3] = 50
  m = modes.mode_metrics(_at_modes(mixture, counts), mixture)
  assert int(m["modes"]) == 1
  assert float(m["high_quality"]) == 1.0
  assert float(m["reverse_kl"]) == pytest.approx(math.log(mixture.num_modes), rel=1e-6)
  assert m["mode_counts"].tolist() == counts


def test_far_samples_capture_nothing_and_kl_is_null_in_json():
  m = modes.mode_metrics(np.full((40, 2), 10.0, np.float32), RING8)
  assert int(m["modes"]) == 0
  assert float(m["high_quality"]) == 0.0
  assert math.isnan(float(m["reverse_kl"]))
  row = modes.to_json_row(m)
  assert row["reverse_kl"] is None
  assert '"reverse_kl": null' in json.dumps(row, allow_nan=False)


@pytest.mark.parametrize("mixture", [RING8, GRID25], ids=lambda m: m.name)
def test_three_sigma_boundary(mixture):
  angles = np.linspace(0, 2 * np.pi, 7, endpoint=False)
  directions = np.stack([np.cos(angles), np.sin(angles)], 1)
  mean = mixture.means_Kx2[-1]
  inside = mean + 2.9 * mixture.sigma * directions
  outside = mean + 3.1 * mixture.sigma * directions
  m = modes.mode_metrics(np.concatenate([inside, outside]).astype(np.float32), mixture)
  assert m["mode_counts"].tolist() == [0] * (mixture.num_modes - 1) + [7]
  assert float(m["high_quality"]) == pytest.approx(0.5)


@pytest.mark.parametrize(
  ("mixture", "counts"),
  [
    (RING8, [3, 1, 0, 0, 0, 0, 0, 0]),
    (RING8, [5, 0, 2, 9, 0, 1, 1, 4]),
    (GRID25, [(7 * k) % 11 for k in range(25)]),
  ],
  ids=["ring8-3-1", "ring8-mixed", "grid25-mixed"],
)
def test_unbalanced_histogram_matches_hand_computation(mixture, counts):
  far = np.full((6, 2), 50.0, np.float32)  # not high quality: must not enter p
  samples = np.concatenate([_at_modes(mixture, counts), far])
  m = modes.mode_metrics(samples, mixture)
  assert m["mode_counts"].tolist() == counts
  assert int(m["modes"]) == sum(c > 0 for c in counts)
  assert float(m["high_quality"]) == pytest.approx(sum(counts) / (sum(counts) + 6), rel=1e-6)
  assert float(m["reverse_kl"]) == pytest.approx(_hand_reverse_kl(counts), rel=1e-5, abs=1e-6)
  if counts[:2] == [3, 1]:
    assert float(m["reverse_kl"]) == pytest.approx(0.75 * math.log(6) + 0.25 * math.log(2))


def test_nearest_mode_on_grid25_with_points_off_the_means():
  rng = np.random.default_rng(0)
  true_k = rng.integers(0, 25, 400)
  # Grid spacing is 2, so any offset shorter than 1 keeps the true mode the nearest.
  radius = rng.uniform(0.0, 0.95, 400)
  angle = rng.uniform(0, 2 * np.pi, 400)
  offset = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
  samples = (GRID25.means_Kx2[true_k] + offset).astype(np.float32)
  index, distance = modes.nearest_mode(samples, GRID25)
  np.testing.assert_array_equal(np.asarray(index), true_k)
  np.testing.assert_allclose(np.asarray(distance), radius / GRID25.sigma, rtol=1e-4, atol=1e-3)
  high_quality = radius < 3 * GRID25.sigma
  m = modes.mode_metrics(samples, GRID25)
  expected = np.bincount(true_k[high_quality], minlength=25)
  np.testing.assert_array_equal(np.asarray(m["mode_counts"]), expected)


@pytest.mark.parametrize("mixture", [RING8, GRID25], ids=lambda m: m.name)
def test_true_mixture_samples_capture_every_mode(mixture):
  m = modes.mode_metrics(mixture.sample(jax.random.key(0), 2500), mixture)
  assert int(m["modes"]) == mixture.num_modes
  # A 2D Gaussian lies within 3 sigma with probability 1 - exp(-9/2) = 0.9889, so no more than
  # ~99% of true samples are high quality; 4 binomial standard deviations of 2,500 draws.
  expected = 1 - math.exp(-4.5)
  assert abs(float(m["high_quality"]) - expected) < 4 * math.sqrt(expected * (1 - expected) / 2500)
  assert float(m["reverse_kl"]) < 0.02


def test_jit_and_vmap_agree_with_eager_and_types_are_pinned():
  batch = jnp.stack([RING8.sample(jax.random.key(s), 300) for s in range(3)])
  batch = batch.at[1].set(5.0)  # one member with nothing high quality
  jitted = jax.jit(functools.partial(modes.mode_metrics, mixture=RING8))
  stacked = jax.vmap(jitted)(batch)
  for i in range(3):
    eager = modes.mode_metrics(batch[i], RING8)
    assert eager["modes"].dtype == jnp.int32 and eager["modes"].shape == ()
    assert eager["high_quality"].dtype == jnp.float32
    assert eager["reverse_kl"].dtype == jnp.float32
    assert eager["mode_counts"].dtype == jnp.int32 and eager["mode_counts"].shape == (8,)
    for key, value in eager.items():
      np.testing.assert_array_equal(np.asarray(stacked[key][i]), np.asarray(value))


def test_to_json_row_gives_python_types():
  row = modes.to_json_row(modes.mode_metrics(_at_modes(RING8, [2, 1, 0, 0, 0, 0, 0, 1]), RING8))
  assert type(row["modes"]) is int and row["modes"] == 3
  assert type(row["high_quality"]) is float and row["high_quality"] == 1.0
  assert type(row["reverse_kl"]) is float
  assert row["mode_counts"] == [2, 1, 0, 0, 0, 0, 0, 1]
  assert all(type(c) is int for c in row["mode_counts"])
  assert modes.to_json_row({"x": jnp.float32(0.97)}) == {"x": 0.97}


# --- the CLI ---------------------------------------------------------------------------------


def _cli(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  command = [sys.executable, "-m", "jgen.evaluate", *args]
  return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_cli_matches_in_process_metrics(tmp_path):
  samples = np.asarray(GRID25.sample(jax.random.key(1), 2500), np.float64)
  samples[:100] = 9.0  # some misses, so that nothing is trivially 1.0
  path = tmp_path / "samples.npy"
  np.save(path, samples)
  result = _cli("--data=grid25", f"--samples={path}", f"--plot={tmp_path / 's.png'}")
  assert result.returncode == 0, result.stderr
  assert "2,500" not in result.stderr  # no protocol note at n = 2500
  row = json.loads(result.stdout)
  expected = modes.to_json_row(modes.mode_metrics(samples, GRID25))
  assert row == {
    "data": "grid25",
    "num_samples": 2500,
    "modes": expected["modes"],
    "num_modes_total": 25,
    "high_quality": expected["high_quality"],
    "reverse_kl": expected["reverse_kl"],
    "mode_counts": expected["mode_counts"],
  }
  assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_notes_non_protocol_sample_count_and_prints_null(tmp_path):
  path = tmp_path / "far.npy"
  np.save(path, np.full((10, 2), 10.0, np.float32))
  result = _cli("--data=ring8", f"--samples={path}")
  assert result.returncode == 0, result.stderr
  assert "2,500" in result.stderr
  assert '"reverse_kl": null' in result.stdout


def _write_text(path):
  path.write_text("1.0 2.0\n3.0 4.0\n")
  return path


def _write_npz(path):
  path = path.with_suffix(".npz")
  np.savez(path, samples=np.zeros((5, 2)))
  return path


def _write_array(array):
  def write(path):
    np.save(path, array)
    return path

  return write


_NON_FINITE = np.zeros((20, 2))
_NON_FINITE[3] = [np.nan, np.inf]
_NON_FINITE[7, 1] = -np.inf


CLI_ERRORS = {  # name: (--data, how the samples file is made, what the one error line says)
  "missing": ("ring8", None, "not found"),
  "unknown-data": ("ring9", _write_array(np.zeros((5, 2))), "valid choices: grid25, ring8"),
  "text": ("ring8", _write_text, "cannot read"),
  "npz": ("ring8", _write_npz, ".npz archive"),
  "3-columns": ("ring8", _write_array(np.zeros((5, 3))), "shape [n, 2], got [5, 3]"),
  "1-d": ("ring8", _write_array(np.zeros(10)), "shape [n, 2], got [10]"),
  "empty": ("ring8", _write_array(np.zeros((0, 2))), "no samples"),
  "strings": ("ring8", _write_array(np.array([["a", "b"]])), "real numbers"),
  "nan": ("ring8", _write_array(_NON_FINITE), "3 non-finite values (NaN or inf) in 2 of 20"),
}


@pytest.fixture(scope="module")
def cli_errors(tmp_path_factory) -> dict:
  """The result of `python -m jgen.evaluate` on each of CLI_ERRORS' files, each command in a
  process of its own (forked from one interpreter: tests/forked_commands.py)."""
  commands = []
  for name, (data, make_file, _) in CLI_ERRORS.items():
    path = tmp_path_factory.mktemp(name) / "samples.npy"
    if make_file is not None:
      path = make_file(path)
    commands.append(["jgen.evaluate", f"--data={data}", f"--samples={path}"])
  results = forked_commands.run(commands, env={"JAX_PLATFORMS": "cpu"})
  return dict(zip(CLI_ERRORS, results, strict=True))


@pytest.mark.parametrize("name", list(CLI_ERRORS))
def test_cli_errors_exit_nonzero_with_a_message(cli_errors, name):
  result = cli_errors[name]
  assert result.returncode != 0
  assert CLI_ERRORS[name][2] in result.stderr
  assert "Traceback" not in result.stderr
  assert result.stdout == ""


def test_progress_shows_an_undefined_reverse_kl_as_a_dash_with_its_reason():
  from jgen.datasets.mixture import MixtureData

  data = MixtureData(get_mixture("ring8"))
  row = {"modes": 0, "high_quality": 0.0, "reverse_kl": None}
  text = data.progress_text(row)
  assert "reverse_kl – (undefined: no sample near any mode yet)" in text and "nan" not in text
  assert "reverse_kl 0.1250" in data.progress_text({**row, "modes": 8, "reverse_kl": 0.125})


def test_a_second_run_on_a_mixture_reuses_its_compiled_mode_metrics():
  """Each run builds its own MixtureData, around the one Mixture of its name
  (mixtures.get_mixture), so the mode metrics (a jit static in the mixture) compile once per
  process, not once per run."""
  from jgen.datasets import mixture as mixture_data

  def evaluate_as_a_new_run(name, seed):
    data = mixture_data.MixtureData.from_config(ml_collections.ConfigDict({"name": name}))
    return data.evaluate(np.asarray(data.mixture.sample(jax.random.key(seed), 300)), None)

  evaluate_as_a_new_run("grid25", 0)
  compiled = mixture_data._metrics._cache_size()
  again = evaluate_as_a_new_run("grid25", 1)
  assert mixture_data._metrics._cache_size() == compiled and again["modes"] > 20
  assert get_mixture("grid25") is get_mixture("grid25")
  with pytest.raises(ValueError, match="read-only"):
    get_mixture("grid25").means_Kx2[0, 0] = 1.0  # shared by every run: nobody may change it
