"""`python -m jgen.main`: a whole run from the command line, and its failures."""

import json
import os
import subprocess
import sys

import forked_commands
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
  "--config.data.num_train=500",
  "--config.model.generator.width=16",
  "--config.model.discriminator.width=16",
  "--config.train.num_steps=40",
  "--config.train.steps_per_dispatch=10",
  "--config.train.log_every=20",
  "--config.train.eval_every=40",
  "--config.train.checkpoint_every=20",
]


def _main(*args, env=None):
  return subprocess.run(
    [sys.executable, "-m", "jgen.main", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env={**os.environ, **(env or {})},
  )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """This file's first runs (their workdir, their result), each as `python -m jgen.main` in a
  process of its own, forked from one interpreter (tests/forked_commands.py)."""
  root = tmp_path_factory.mktemp("runs")
  args = {
    "set D": ["--config=configs/gan_setd.py:data=grid25", *TINY],
    "to resume": ["--config=configs/gan.py", *TINY],
    "population": ["--config=configs/gan.py", *TINY, "--config.population.size=2"],
  }
  commands = [["jgen.main", f"--workdir={root / name}", *flags] for name, flags in args.items()]
  results = forked_commands.run(commands)
  return {name: (root / name, result) for name, result in zip(args, results, strict=True)}


def test_a_run_from_the_command_line(runs):
  tmp_path, result = runs["set D"]
  assert result.returncode == 0, result.stderr
  final = json.loads(result.stdout.strip().splitlines()[-1])
  assert final["step"] == 40 and len(final["mode_counts"]) == 25
  assert "steps/s, ETA" in result.stderr and "modes " in result.stderr
  # Only jgen's own progress: no orbax checkpoint chatter, no backend probe ("Failed to open
  # libtpu.so" reads like an error but is JAX looking for a TPU).
  for noise in ("orbax", "checkpoint_manager", "xla_bridge", "libtpu", "Unable to initialize"):
    assert noise not in result.stderr, result.stderr[-2000:]
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["data"]["name"] == "grid25" and saved["train"]["num_steps"] == 40
  # Progress as a person reads it: no logging prefix (level, time, thread, file:line).
  progress = [line for line in result.stderr.splitlines() if "steps/s, ETA" in line]
  assert progress and all(line.startswith("step ") for line in progress), progress
  # The versions the result depends on are kept with it.
  environment = json.loads((tmp_path / "environment.json").read_text())
  assert environment["latest"]["versions"]["jax"] == jax_version()
  assert environment["first"] == environment["latest"]


def jax_version() -> str:
  from importlib import metadata

  return metadata.version("jax")


def test_a_resume_under_other_versions_says_so_in_one_line(runs):
  tmp_path, first = runs["to resume"]
  assert first.returncode == 0, first.stderr
  args = ["--config=configs/gan.py", f"--workdir={tmp_path}", *TINY]
  recorded = json.loads((tmp_path / "environment.json").read_text())
  recorded["latest"]["versions"]["jax"] = "0.0.1"
  (tmp_path / "environment.json").write_text(json.dumps(recorded))
  result = _main(*args[:2], *TINY[:-5], "--config.train.num_steps=60", *TINY[4:])
  assert result.returncode == 0, result.stderr
  lines = [line for line in result.stderr.splitlines() if "another environment" in line]
  assert len(lines) == 1 and f"jax 0.0.1 -> {jax_version()}" in lines[0], result.stderr
  kept = json.loads((tmp_path / "environment.json").read_text())
  assert kept["first"]["versions"]["jax"] == recorded["first"]["versions"]["jax"]


def test_a_population_ends_with_a_one_line_verdict_before_the_json(runs):
  _, result = runs["population"]
  assert result.returncode == 0, result.stderr
  final = json.loads(result.stdout.strip().splitlines()[-1])
  verdict = result.stderr.strip().splitlines()[-1]
  counts = final["modes"]
  assert verdict.startswith("population of 2 members at step 40: modes per member min "), verdict
  assert f"min {min(counts)}/8" in verdict and f"max {max(counts)}/8" in verdict
  assert f"all 8 modes in {sum(c == 8 for c in counts)} of 2" in verdict


BAD_SETTINGS = [
  ("--config.train.nope=1", "the config has no key 'nope'"),
  ("--config.model.discriminator.name=transformer", "valid choices: attention, deepsets"),
  ("--config.loss.name=wasserstein", "valid choices: hinge, minimax, non_saturating, wgan_gp"),
  ("--config.data.name=ring9", "valid choices: celeb_a, cifar10, codes, digits, grid25, mnist"),
  ("--config.sampler.kind=stream", "valid choices: epoch_shuffle, explicit, full_batch"),
  ("--config.sampler.streak_length=0", "streak_length"),
  ("--config.model.set_size=3", "sets of model.set_size=3"),
  ("--config.data.fresh_samples=true", "set sampler.kind=with_replacement"),
  ("--config.optimizer.name=lbfgs", "valid choices: adam, momentum, sgd"),
]
EXPLICIT = "explicit stream"


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
  """Each refused command of this file (its workdir, its result), each run as `python -m
  jgen.main` in a process of its own, all forked from one interpreter (tests/forked_commands.py):
  a refusal needs no fresh interpreter, only its own process. What the refusals print comes
  from jgen.main's checks, not from imports, so the trainer is imported once, before the forks."""
  root = tmp_path_factory.mktemp("refused")
  workdirs, commands = {}, {}
  for i, (override, _) in enumerate(BAD_SETTINGS):
    workdirs[override] = root / f"bad{i}" / "run"
    args = ["--config=configs/gan_setd.py", f"--workdir={workdirs[override]}", *TINY, override]
    if "streak_length" in override:
      args.append("--config.sampler.kind=streak")
    commands[override] = ["jgen.main", *args]
  stream = root / "stream.npy"
  np.save(stream, np.zeros((40, 7), np.int32))  # batch width 7, config batch 100
  workdirs[EXPLICIT] = root / "explicit" / "run"
  commands[EXPLICIT] = [
    "jgen.main",
    "--config=configs/gan.py",
    f"--workdir={workdirs[EXPLICIT]}",
    *TINY,
    "--config.sampler.kind=explicit",
    f"--config.sampler.path={stream}",
  ]
  # Each refusal comes after jgen.main has imported the GAN trainer: imported once, in the parent.
  results = forked_commands.run(list(commands.values()), preload=("jgen.trainers.gan",))
  return {key: (workdirs[key], result) for key, result in zip(commands, results, strict=True)}


@pytest.mark.parametrize("override,message", BAD_SETTINGS)
def test_bad_settings_fail_clearly_and_write_nothing(refused, override, message):
  workdir, result = refused[override]
  assert result.returncode != 0
  assert message in result.stderr, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert not workdir.exists()


def test_explicit_stream_errors_name_the_file_and_the_problem(refused):
  workdir, result = refused[EXPLICIT]
  assert result.returncode != 0
  assert "stream.npy" in result.stderr and "100" in result.stderr, result.stderr[-2000:]
  assert not workdir.exists()
