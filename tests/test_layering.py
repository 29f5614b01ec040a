"""The house's rules, read from the code's imports (ast): no import cycle, between modules or
between folders (no folder imports a folder that imports it back), nothing below a trainer
imports a trainer, nothing imports a command, no private name crosses a module.

Run as a script for the report a reader wants (modules by size, layers, any violation):

  python tests/test_layering.py
"""

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jgen"

# `python -m jgen.X` commands: thin shells that nothing may import.
COMMANDS = {
  "jgen.main",
  "jgen.evaluate",
  "jgen.replay",
  "jgen.cases",
  "jgen.study",
  "jgen.indices",
  "jgen.benchmark",
  "jgen.compare_inverse",
  "jgen.inception_weights",
}
# Modules that sit above the trainers: they build trainers by name.
ABOVE_TRAINERS = ("jgen.replays", "jgen.studies")


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, pathlib.Path]:
  return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: pathlib.Path, known: set[str]) -> list[tuple[str, list[str]]]:
  """(imported jgen module, names taken from it) for every import in the file, at any depth."""
  found = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found += [(alias.name, []) for alias in node.names if alias.name.startswith("jgen")]
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jgen"):
      for alias in node.names:
        submodule = f"{node.module}.{alias.name}"
        if submodule in known:
          found.append((submodule, []))
        else:
          found.append((node.module, [alias.name]))
  return found


def private_uses(path: pathlib.Path, known: set[str]) -> list[str]:
  """`module._name` where `module` is another jgen module imported into this file."""
  tree = ast.parse(path.read_text())
  aliases = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jgen"):
      for alias in node.names:
        if f"{node.module}.{alias.name}" in known:
          aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
  uses = []
  for node in ast.walk(tree):
    if (
      isinstance(node, ast.Attribute)
      and isinstance(node.value, ast.Name)
      and node.value.id in aliases
      and node.attr.startswith("_")
      and not node.attr.startswith("__")
    ):
      uses.append(f"{aliases[node.value.id]}.{node.attr}")
  return uses


def graph() -> dict[str, set[str]]:
  table = modules()
  known = set(table)
  edges = {}
  for name, path in table.items():
    targets = {target for target, _ in imports_of(path, known) if target in known}
    edges[name] = targets - {name}
  return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in edges.get(node, ()):
      if target not in index:
        visit(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        found.append(sorted(component))

  sys.setrecursionlimit(10_000)
  for node in edges:
    if node not in index:
      visit(node)
  return found


def folder_of(name: str) -> str:
  """The folder a module lives in: jgen.run.loop -> jgen.run; a top-level module (a command,
  jgen itself) is its own."""
  return ".".join(name.split(".")[:2])


def folder_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
  """Folder -> the other folders its modules import."""
  folders: dict[str, set[str]] = {}
  for source, targets in edges.items():
    here = folder_of(source)
    folders.setdefault(here, set()).update(folder_of(t) for t in targets if folder_of(t) != here)
  return folders


def is_trainer(name: str) -> bool:
  return name.startswith("jgen.trainers.") and name != "jgen.trainers"


def below_trainers(name: str) -> bool:
  above = is_trainer(name) or name in COMMANDS or name.startswith(ABOVE_TRAINERS)
  return not above and name != "jgen.trainers"


def back_edges(edges: dict[str, set[str]]) -> list[str]:
  return sorted(
    f"{source} -> {target}"
    for source, targets in edges.items()
    for target in targets
    if below_trainers(source) and (is_trainer(target) or target == "jgen.trainers")
  )


def command_imports(edges: dict[str, set[str]]) -> list[str]:
  return sorted(
    f"{source} -> {target}"
    for source, targets in edges.items()
    for target in targets
    if target in COMMANDS
  )


def test_no_import_cycle():
  assert cycles(graph()) == []


def test_no_folder_imports_a_folder_that_imports_it_back():
  assert cycles(folder_graph(graph())) == []


def test_the_folder_check_finds_a_cycle_through_modules_that_form_none():
  # run.loop -> collapse.recorder and collapse.replay -> run.checkpoints: no module cycle,
  # but the folders run and collapse import each other.
  edges = {
    "jgen.run.loop": {"jgen.collapse.recorder", "jgen.run.checkpoints"},
    "jgen.collapse.recorder": set(),
    "jgen.collapse.replay": {"jgen.run.checkpoints"},
    "jgen.run.checkpoints": set(),
  }
  assert cycles(edges) == []
  assert folder_graph(edges) == {"jgen.run": {"jgen.collapse"}, "jgen.collapse": {"jgen.run"}}
  assert cycles(folder_graph(edges)) == [["jgen.collapse", "jgen.run"]]
  # The same modules without the back edge: one way, no cycle; a command is its own folder.
  edges["jgen.collapse.replay"] = set()
  edges["jgen.replay"] = {"jgen.collapse.replay", "jgen.run.loop"}
  assert folder_graph(edges) == {
    "jgen.run": {"jgen.collapse"},
    "jgen.collapse": set(),
    "jgen.replay": {"jgen.collapse", "jgen.run"},
  }
  assert cycles(folder_graph(edges)) == []


def test_nothing_below_a_trainer_imports_a_trainer():
  assert back_edges(graph()) == []


def test_nothing_imports_a_command():
  assert command_imports(graph()) == []


def test_no_private_name_crosses_a_module():
  table = modules()
  known = set(table)
  crossing = [use for path in table.values() for use in private_uses(path, known)]
  crossing += [
    f"{target}.{name}"
    for path in table.values()
    for target, names in imports_of(path, known)
    for name in names
    if name.startswith("_")
  ]
  assert crossing == []


def test_every_command_is_a_module_that_exists():
  assert COMMANDS <= set(modules())


def test_the_checks_can_fail():
  # A cycle, a back-edge and a command import, drawn by hand, are each found.
  edges = {"jgen.data.a": {"jgen.evals.b"}, "jgen.evals.b": {"jgen.data.a", "jgen.trainers.gan"}}
  edges["jgen.run.loop"] = {"jgen.replay"}
  assert cycles(edges) == [["jgen.data.a", "jgen.evals.b"]]
  assert back_edges(edges) == ["jgen.evals.b -> jgen.trainers.gan"]
  assert command_imports(edges) == ["jgen.run.loop -> jgen.replay"]


def report() -> str:
  edges = graph()
  table = modules()
  sizes = sorted(
    ((len(path.read_text().splitlines()), name) for name, path in table.items()), reverse=True
  )
  lines = [f"{len(table)} modules, {sum(size for size, _ in sizes)} lines; largest:"]
  lines += [f"  {size:5d}  {name}" for size, name in sizes[:10]]
  lines.append(f"import cycles: {cycles(edges) or 'none'}")
  folders = folder_graph(edges)
  lines.append("folder imports (commands and jgen/__init__ left out):")
  lines += [
    f"  {source} -> {', '.join(sorted(targets)) or '(nothing)'}"
    for source, targets in sorted(folders.items())
    if source not in COMMANDS and source != "jgen"
  ]
  lines.append(f"folder cycles: {cycles(folders) or 'none'}")
  lines.append(f"below-trainer modules importing a trainer: {back_edges(edges) or 'none'}")
  lines.append(f"imports of command modules: {command_imports(edges) or 'none'}")
  return "\n".join(lines)


if __name__ == "__main__":
  print(report())
