"""Runs `python -m jgen.X ...` commands as a shell would, each in a process of its own, forked
from one interpreter that imported the commands' modules once.

A command's own process then costs a fork, not an interpreter start plus the JAX and jgen
imports (about 1.5 CPU seconds each). In the child everything after those imports is what
`python -m` does: the module runs as __main__ (runpy) with the command's argv, its stdout and
stderr are files of their own, an exception ends it with its traceback, and its exit code and
interpreter shutdown are a normal process's. Commands define no flags on import
(tests/test_tools_import.py checks), so every child starts with none defined and none parsed,
as a fresh process does; nothing in the parent starts JAX's backend.
"""

import json
import os
import pathlib
import subprocess
import sys

import conftest

ROOT = pathlib.Path(__file__).resolve().parents[1]

_DRIVER = """
import importlib, json, os, runpy, sys, tempfile
commands, preload, unrendered_png = json.load(sys.stdin)
unrendered_png = unrendered_png.encode("latin-1")
for module in sorted({argv[0] for argv in commands}):
  importlib.import_module(module)  # and all it imports; each child runs the module itself
  del sys.modules[module]
for module in preload:  # what the commands import later (a trainer): imported once, here
  importlib.import_module(module)
from jgen.viz import plots
plots.png_bytes = lambda figure, dpi=None: unrendered_png  # as conftest.pictures_unrendered
from jax._src import xla_bridge
assert not xla_bridge._backends, f"importing {preload} started JAX's backend: no fork after it"
# Out of the collector's sight: a child's collections (and the one at its exit) would otherwise
# walk, and so copy page by page, the whole heap it shares with this process: 0.5 s a child
# measured on 2 cores, against 0.15 with the heap frozen.
import gc
gc.freeze()
results = []
for argv in commands:
  with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
      os.dup2(out.fileno(), 1)
      os.dup2(err.fileno(), 2)
      sys.argv = list(argv)
      runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
      sys.exit(0)
    _, status = os.waitpid(pid, 0)
    out.seek(0)
    err.seek(0)
    results.append([os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode()])
json.dump(results, sys.stdout)
"""


def run(
  commands: list[list[str]],
  env: dict | None = None,
  preload: tuple[str, ...] = (),
) -> list[subprocess.CompletedProcess]:
  """Each command is what follows `python -m` (["jgen.main", "--config=..."]); returns each
  one's exit code, stdout and stderr, in order. `env` is added to this process's environment.
  `preload`: modules the commands import as they run (jgen.main imports its trainer once it has
  read the config), imported in the parent too, so that each child does not import them again
  (about a CPU second each); for commands whose import-time output no test reads. The driver
  checks that none of them starts JAX's backend (a fork after that is unsafe).
  The commands' pictures are written unrendered (conftest.pictures_unrendered): no test of a
  command reads a picture's pixels."""
  unrendered = conftest.UNRENDERED_PNG.decode("latin-1")
  result = subprocess.run(
    [sys.executable, "-c", _DRIVER],
    input=json.dumps([commands, list(preload), unrendered]),
    cwd=ROOT,
    env={**os.environ, **(env or {})},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  outcomes = json.loads(result.stdout)
  return [
    subprocess.CompletedProcess(["python", "-m", *argv], code, out, err)
    for argv, (code, out, err) in zip(commands, outcomes, strict=True)
  ]
