"""Config helpers: `key=value` switches after the colon, and config loading.

A config file defines `get_config(arg=None)`; `arg` is whatever follows the
colon in `--config=configs/gan_setd.py:data=grid25,steps=2000`. `parse_arg`
turns it into a locked ConfigDict of typed values, refusing unknown switches.
"""

import ast
import json

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


def to_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)
