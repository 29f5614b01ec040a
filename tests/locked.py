"""Tests that compare against recorded digests hold only under the versions they were recorded
under: the lock, requirements/cpu.txt. Elsewhere they say so in one line (a skip), instead of
failing as a regression would."""

import pathlib
import re
from importlib import metadata

import jax
import pytest

LOCK = pathlib.Path(__file__).resolve().parents[1] / "requirements" / "cpu.txt"
# The packages whose arithmetic a state digest depends on.
NUMERICS = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def locked_versions() -> dict[str, str]:
  pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", LOCK.read_text(), flags=re.MULTILINE))
  return {name: pins[name] for name in NUMERICS}


def version_mismatches() -> list[str]:
  """`name locked -> installed` for every numerics package that differs from the lock."""
  return [
    f"{name} {locked} -> {metadata.version(name)}"
    for name, locked in locked_versions().items()
    if metadata.version(name) != locked
  ]


def _reason() -> str:
  if jax.default_backend() != "cpu":
    return f"digests recorded on CPU; this is {jax.default_backend()}"
  return (
    f"digests recorded under {LOCK.name}'s versions, not these ({', '.join(version_mismatches())})"
    f": install with pip install -c requirements/cpu.txt to check them"
  )


# Marks a test whose expected digests or numbers were recorded on CPU under the lock.
recorded_under_the_lock = pytest.mark.skipif(
  jax.default_backend() != "cpu" or bool(version_mismatches()), reason=_reason()
)
