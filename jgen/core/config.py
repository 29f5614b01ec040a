"""Config helpers: `key=value` switches after the colon, and config loading.

A config file defines `get_config(arg=None)`; `arg` is whatever follows the
colon in `--config=configs/gan_setd.py:data=grid25,steps=2000`. `parse_arg`
turns it into a locked ConfigDict of typed values, refusing unknown switches.
"""

import ast

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses 'a=1,b=x,flag' against `defaults`; values take the default's type."""
  result = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, has_value, value = item.partition("=")
    if key not in defaults:
      valid = ", ".join(sorted(defaults)) or "(none)"
      raise ValueError(f"unknown config switch {key!r}; valid switches: {valid}")
    default = defaults[key]
    if not has_value:
      if not isinstance(default, bool):
        raise ValueError(f"config switch {key!r} needs a value: {key}=...")
      result[key] = True
    elif isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config switch {key!r} is a bool, got {value!r}")
      result[key] = value.lower() in ("true", "1")
    elif isinstance(default, str):
      result[key] = value
    else:
      result[key] = type(default)(ast.literal_eval(value))
  result.lock()
  return result


def apply_override(config: ml_collections.ConfigDict, override: str) -> None:
  """Applies 'config.a.b=value' (or 'a.b=value') in place, keeping the field's type.

  Values are read as Python literals where they parse ('3', '1e-3', 'True'), else as
  strings ('with_replacement'). An unknown key or a value of the wrong type is a ValueError.
  """
  path, has_value, text = override.partition("=")
  if not has_value:
    raise ValueError(f"override {override!r} must look like config.a.b=value")
  keys = path.removeprefix("config.").split(".")
  node = config
  for key in keys[:-1]:
    if key not in node or not isinstance(node[key], ml_collections.ConfigDict):
      raise ValueError(f"override {override!r}: the config has no section {key!r}")
    node = node[key]
  if keys[-1] not in node:
    raise ValueError(f"override {override!r}: the config has no key {path!r}")
  current = node[keys[-1]]
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  if isinstance(current, str):
    value = text
  elif isinstance(current, bool) or isinstance(value, bool):
    if not (isinstance(current, bool) and isinstance(value, bool)):
      raise ValueError(f"override {override!r}: {path} is {current!r}, not a bool")
  elif isinstance(current, float) and isinstance(value, int):
    value = float(value)
  elif type(current) is not type(value):
    raise ValueError(f"override {override!r}: {path} holds {type(current).__name__} values")
  with node.unlocked():
    node[keys[-1]] = value
