"""What a result depends on besides its config and seed: package versions, platform, devices.

A run writes this to WORKDIR/environment.json, a case to its case.json, a study report to its
header. The same config and seed give the same bits only under the same environment (the
README's lock pins the versions), so a resume under another one says so, and a replay refuses.
"""

import json
import os
import platform
import subprocess
from importlib import metadata

import jax

from jgen.core import jsonl, parallel

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
FILE = "environment.json"


def versions() -> dict:
  """Python's and the numerics packages' versions."""
  return {"python": platform.python_version(), **{p: metadata.version(p) for p in PACKAGES}}


def environment() -> dict:
  """What replay compares before it trusts a bit-for-bit check."""
  device = jax.devices()[0]
  return {
    "versions": versions(),
    "platform": jax.default_backend(),
    "device_kind": device.device_kind,
    # A single run's devices: those jgen splits off the CPU for populations do not count
    # (a population's split is its config's population.devices).
    "device_count": len(parallel.population_devices(1)),
    "process_count": jax.process_count(),
    "xla_flags": parallel.user_xla_flags(),
    "git_commit": git_commit(),
  }


def git_commit() -> str | None:
  try:
    result = subprocess.run(
      ["git", "rev-parse", "HEAD"],
      cwd=os.path.dirname(os.path.abspath(__file__)),
      capture_output=True,
      text=True,
      timeout=5,
    )
  except (OSError, subprocess.SubprocessError):
    return None
  return result.stdout.strip() or None


def differences(recorded: dict, now: dict) -> list[str]:
  """`key: old -> new` for what changed between two environments (the commit excepted)."""
  changed = []
  for key in ("platform", "device_kind", "device_count", "process_count", "xla_flags"):
    if recorded.get(key) != now.get(key):
      changed.append(f"{key}: {recorded.get(key)!r} -> {now.get(key)!r}")
  old, new = recorded.get("versions", {}), now.get("versions", {})
  for name in sorted(set(old) | set(new)):
    if old.get(name) != new.get(name):
      changed.append(f"{name} {old.get(name)} -> {new.get(name)}")
  return changed


def record(workdir: str) -> list[str]:
  """Writes WORKDIR/environment.json; returns how it differs from the one there before.

  The first run's environment is kept under "first" and every later one replaces "latest", so
  a run resumed under other versions keeps the record of both."""
  path = os.path.join(workdir, FILE)
  now = environment()
  before = None
  if os.path.exists(path):
    try:
      with open(path) as f:
        before = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError):
      before = None  # damaged: rewritten below with what is known now
  first = before.get("first", now) if isinstance(before, dict) else now
  latest = before.get("latest", first) if isinstance(before, dict) else now
  text = json.dumps({"first": first, "latest": now}, indent=2, sort_keys=True) + "\n"
  jsonl.replace_bytes(path, text.encode())
  return differences(latest, now)
