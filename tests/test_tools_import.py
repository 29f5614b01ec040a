"""Every command-line tool can be imported beside every other (no clashing absl flags)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOOLS = ["main", "indices", "evaluate", "benchmark", "cases", "replay", "study"]


def test_all_tools_import_together():
  code = "; ".join(f"import jgen.{tool}" for tool in TOOLS)
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]


def test_each_tool_prints_its_usage():
  for tool in TOOLS:
    result = subprocess.run(
      [sys.executable, "-m", f"jgen.{tool}", "--helpshort"],
      cwd=ROOT,
      capture_output=True,
      text=True,
    )
    # absl exits 1 after help; what matters is that the tool's usage (its docstring) shows.
    assert f"python -m jgen.{tool}" in result.stdout + result.stderr, (tool, result.stderr[-800:])
