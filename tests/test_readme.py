"""The README stays true: its commands, configs, tools and tables match the code."""

import importlib
import importlib.util
import pathlib
import re
import shlex

import forked_commands
import ml_collections
import pytest

from jgen import models, trainers
from jgen.data import samplers

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
LOCK = "requirements/cpu.txt"
TEST_COMMAND = f'pip install -c {LOCK} -e ".[test]" && python -m pytest'


def test_ci_runs_the_readme_test_command_verbatim():
  assert TEST_COMMAND in README
  ci_commands = [
    line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line
  ]
  assert ci_commands == [TEST_COMMAND]


def test_the_main_command_names_a_real_config():
  main = re.search(rf"pip install -c {LOCK} -e \. && python -m jgen\.main --config=(\S+) ", README)
  assert main and (ROOT / main.group(1)).is_file()


def _trainer_names(config) -> list[str]:
  """`trainer` in the config and in every config nested in it (a study's base cell)."""
  names = [config.trainer] if "trainer" in config else []
  for value in config.values():
    if isinstance(value, ml_collections.ConfigDict):
      names += _trainer_names(value)
  return names


def test_every_mentioned_config_loads_with_its_switches():
  for name in set(re.findall(r"configs/(\w+)\.py", README)):
    module = importlib.import_module(f"configs.{name}")
    row = re.search(rf"^\| `configs/{name}\.py` \|.*$", README, flags=re.MULTILINE)
    assert row, f"configs/{name}.py is mentioned but not in the configs table"
    # Its docstring shows how to run it, with a command that exists and names this file.
    runs = rf"python -m (jgen\.\w+) --config=configs/{name}\.py"
    commands = set(re.findall(runs, module.__doc__))
    assert commands, f"configs/{name}.py's docstring has no command that runs it"
    for command in commands:
      assert importlib.util.find_spec(command) is not None, (name, command)
    default = module.get_config(None)
    switches = [None, "runlocal"] + (["data=grid25"] if "data=" in row.group(0) else [])
    for arg in switches:
      config = module.get_config(arg)
      # Locked, so a misspelt --config.key fails instead of adding a key nothing reads.
      assert isinstance(config, ml_collections.ConfigDict) and config.is_locked, (name, arg)
      with pytest.raises(AttributeError):
        config.no_such_key = 1
      # Every trainer it names is registered; jgen.main needs one at the top.
      for trainer in _trainer_names(config):
        assert hasattr(trainers.get_trainer(trainer), "train_and_evaluate"), (name, trainer)
      if "jgen.main" in commands:
        assert "trainer" in config, name
      # A switch changes the config, and says what it says.
      if arg is not None:
        assert config.to_dict() != default.to_dict(), (name, arg)
      if arg == "data=grid25":
        assert config.data.name == "grid25", name


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


def _command_blocks() -> list[str]:
  """Every command in the README's code blocks, continuation lines joined, comments dropped."""
  commands = []
  for block in re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.DOTALL):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.split("   #", 1)[0].split("    #", 1)[0].strip()
      for command in line.split("&&"):
        command = re.sub(r"\[--config\.x=v \.\.\.\]", "", command).strip()
        if command.startswith(("pip ", "python ", "bash ")):
          commands.append(command)
  return commands


def test_every_pip_install_in_the_readme_installs_from_a_lock():
  installs = [c for c in _command_blocks() if c.startswith("pip ")]
  assert len(installs) >= 4, installs
  for command in installs:
    lock = re.search(r"-c (requirements/\S+\.txt)", command)
    assert lock and (ROOT / lock.group(1)).is_file(), command


def test_every_launch_script_the_readme_runs_exists_and_names_a_real_config():
  for command in [c for c in _command_blocks() if c.startswith("bash ")]:
    words = shlex.split(command)
    assert (ROOT / words[1]).is_file(), command
    configs = [w for w in words if w.startswith("configs/")]
    assert all((ROOT / c.split(":")[0]).is_file() for c in configs), command


def _parse_all(commands: list[str]) -> list[tuple[str, int, str]]:
  """(command, exit code, output) of each command run with JGEN_PARSE_ONLY=1 (each in a process
  of its own, forked from one that imported the commands: tests/forked_commands.py)."""
  argvs = [shlex.split(command) for command in commands]
  for words, command in zip(argvs, commands, strict=True):
    assert words[:2] == ["python", "-m"], command
  results = forked_commands.run(
    [words[2:] for words in argvs], env={"JGEN_PARSE_ONLY": "1", "JAX_PLATFORMS": "cpu"}
  )
  return [(c, r.returncode, r.stdout + r.stderr) for c, r in zip(commands, results, strict=True)]


def test_every_readme_command_parses_as_written():
  """Each `python -m jgen.X ...` the README shows, run verbatim up to the end of flag parsing:
  the module exists, every flag and --config.key exists, the config file and its switches load.
  A renamed flag or config key fails here instead of in a reader's terminal."""
  commands = [c for c in _command_blocks() if c.startswith("python -m jgen")]
  assert len(commands) >= 15, commands
  results = _parse_all(sorted(set(commands)))
  failures = [(c, out) for c, code, out in results if code != 0 or "flags parsed" not in out]
  assert not failures, failures


def test_the_parse_check_fails_on_a_misspelt_flag_or_key():
  results = _parse_all(
    [
      "python -m jgen.main --config=configs/gan.py --workdir=w --config.train.num_stepz=1",
      "python -m jgen.cases --workdirr=w",
      "python -m jgen.cases --workdir=w",  # and parses a good one
    ]
  )
  for command, code, out in results[:2]:
    assert code == 1 and "error" in out, (command, out)
  assert results[2][1:] == (0, "jgen.cases: flags parsed\n"), results[2]
