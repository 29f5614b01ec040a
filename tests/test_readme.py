"""The README stays true: its commands, configs, tools and tables match the code."""

import importlib
import importlib.util
import pathlib
import re

from jgen import models
from jgen.data import samplers

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
TEST_COMMAND = 'pip install -e ".[test]" && python -m pytest'


def test_ci_runs_the_readme_test_command_verbatim():
  assert TEST_COMMAND in README
  ci_commands = [
    line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line
  ]
  assert ci_commands == [TEST_COMMAND]


def test_the_main_command_names_a_real_config():
  main = re.search(r"pip install -e \. && python -m jgen\.main --config=(\S+) ", README)
  assert main and (ROOT / main.group(1)).is_file()


def test_every_mentioned_config_loads_with_its_switches():
  for name in set(re.findall(r"configs/(\w+)\.py", README)):
    module = importlib.import_module(f"configs.{name}")
    row = re.search(rf"^\| `configs/{name}\.py` \|.*$", README, flags=re.MULTILINE)
    assert row, f"configs/{name}.py is mentioned but not in the configs table"
    switches = [None, "runlocal"] + (["data=grid25"] if "data=" in row.group(0) else [])
    for arg in switches:
      assert module.get_config(arg) is not None


def test_every_mentioned_module_and_launch_script_exists():
  for module in set(re.findall(r"python -m (jgen(?:\.\w+)+)", README)):
    assert importlib.util.find_spec(module) is not None, module
  for script in set(re.findall(r"launch/[\w.]+", README)):
    assert (ROOT / script).is_file(), script


def _first_column(heading: str) -> set[str]:
  section = README.split(heading, 1)[1].split("\n#", 1)[0]
  return set(re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE))


def test_tables_list_exactly_the_registered_names():
  assert _first_column("### Discriminators") == set(models.DISCRIMINATORS)
  assert _first_column("### Sampling orders") == set(samplers._KINDS)
