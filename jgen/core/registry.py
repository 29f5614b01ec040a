"""Choose by name, and fail with the list of valid names."""

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
  pass


def choose(what: str, name: str, table: Mapping[str, T]) -> T:
  """Returns `table[name]`, or raises naming `what` and every valid choice."""
  try:
    return table[name]
  except KeyError:
    valid = ", ".join(sorted(table))
    raise UnknownNameError(f"unknown {what} {name!r}; valid choices: {valid}") from None
