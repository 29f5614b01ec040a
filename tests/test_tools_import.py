"""Every command-line tool can be imported beside every other (no clashing absl flags), defines
no flag on import (jgen.core.cli), prints only its output in a normal run, and reports a mistake
as one line."""

import os
import pathlib
import subprocess
import sys

import forked_commands
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Every `python -m jgen.X` command; each one's shell is jgen.core.cli.run, which defines its
# flags when it runs, not on import.
TOOLS = [
  "main",
  "indices",
  "evaluate",
  "inception_weights",
  "benchmark",
  "cases",
  "replay",
  "study",
  "compare_inverse",
]


def _python(*args, env=None):
  return subprocess.run(
    [sys.executable, *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env={**os.environ, **(env or {})},
    timeout=300,
  )


def test_all_tools_import_together_and_define_no_flags():
  imports = "; ".join(f"import jgen.{tool}" for tool in TOOLS)
  code = (
    # absl's and orbax's own modules define their flags (--verbosity, --pdb, ...) when
    # imported: take them as the baseline.
    "from absl import app, flags, logging; from ml_collections import config_flags; "
    "import jax, orbax.checkpoint; before = set(flags.FLAGS); "
    f"{imports}; added = sorted(set(flags.FLAGS) - before); assert not added, added"
  )
  result = _python("-c", code)
  assert result.returncode == 0, result.stderr[-2000:]


def test_each_tool_prints_its_usage_and_main_its_shared_flags():
  # Each `python -m jgen.X --helpshort` in a process of its own (tests/forked_commands.py).
  results = forked_commands.run([[f"jgen.{tool}", "--helpshort"] for tool in TOOLS])
  for tool, result in zip(TOOLS, results, strict=True):
    # absl exits 1 after help; what matters is that the tool's usage (its docstring) shows.
    assert f"python -m jgen.{tool}" in result.stdout + result.stderr, (tool, result.stderr[-800:])
    if tool == "main":
      for flag in ("--config:", "--workdir:", "--[no]multihost:"):
        assert flag in result.stdout, result.stdout


def test_evaluate_prints_only_its_row(tmp_path):
  path = tmp_path / "samples.npy"
  np.save(path, np.zeros((2500, 2), np.float32))
  # No JAX_PLATFORMS: the backend probe's INFO lines ("Failed to open libtpu.so") must not show.
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  result = subprocess.run(
    [sys.executable, "-m", "jgen.evaluate", "--data=ring8", f"--samples={path}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
  )
  assert result.returncode == 0 and result.stderr == "", result.stderr
  assert result.stdout.startswith('{"data": "ring8"') and result.stdout.count("\n") == 1


def test_mistakes_are_one_line_and_exit_1(tmp_path):
  cases = [
    (["jgen.main", "--config=configs/gan.py:nope=1", "--workdir=w"], "unknown config switch"),
    (["jgen.main", "--config=configs/absent.py", "--workdir=w"], "No such file"),
    (["jgen.main", "--config=configs/gan.py"], "--workdir is required"),
    (["jgen.main", "--config=configs/gan.py", "--workdir=w", "x"], "unexpected arguments: x"),
    (["jgen.indices", "--config=configs/gan.py", "--bogus"], "Unknown command line flag"),
    (["jgen.evaluate", "--data=ring8"], "give --data and --samples"),
    (["jgen.inception_weights"], "--pth is required"),
  ]
  # Each command in a process of its own (tests/forked_commands.py).
  results = forked_commands.run([args for args, _ in cases])
  for (args, message), result in zip(cases, results, strict=True):
    program = args[0]
    assert result.returncode == 1, (args, result.stderr)
    assert result.stderr.startswith(f"{program}: error: ") and message in result.stderr, (
      args,
      result.stderr,
    )
    assert len(result.stderr.splitlines()) == 1 and result.stdout == "", result.stderr
  assert not (ROOT / "w").exists()


def test_jgen_debug_shows_the_traceback():
  # The same command without JGEN_DEBUG is one line without a traceback:
  # tests/test_indices_cli.py::test_bad_settings_exit_nonzero_with_the_fix_and_no_traceback.
  args = ["-m", "jgen.indices", "--config=configs/gan.py", "--config.sampler.kind=nope"]
  debug = _python(*args, env={"JAX_PLATFORMS": "cpu", "JGEN_DEBUG": "1"})
  assert debug.returncode != 0 and "Traceback" in debug.stderr
  assert "valid choices" in debug.stderr
