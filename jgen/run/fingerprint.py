"""The identity of a run: everything that determines its trajectory, stored with each checkpoint.

A resume continues a trajectory only if it would compute the same one. config.json says so
while it exists; the fingerprint travels with the checkpoints, so a deleted config.json, an
explicit index stream (.npy) edited between runs, or a code change of the data order is still
caught. It holds:

  config      the flattened config minus the keys a resume may change
              (workdir.RESUMABLE_CHANGES and collapse.*)
  streams     sha256 of the contents of each explicit sampler stream (`*.path` of a sampler
              whose kind is 'explicit'): the path names a file, its rows are the data order
  data_order  DATA_ORDER_VERSION below

The newest checkpoint's record alone can be damaged (a flipped bit in its digests file): when it
disagrees with this run where config.json and the older checkpoints' records agree with it, the
record is damaged, not another run's, and that checkpoint is set aside like any damaged one.
"""

import hashlib
import json
import os

from jgen.run import workdir

# Bump when the code changes which indices a sampler draws for a (config, step), or how a
# batch is gathered from them: an old checkpoint then continues another trajectory.
DATA_ORDER_VERSION = 1


def _file_sha256(path: str) -> str:
  if not os.path.isfile(path):
    return "<missing>"
  sha = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      sha.update(block)
  return sha.hexdigest()


def _json_value(value):
  return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def fingerprint(config) -> dict:
  """The run identity of `config` (a ConfigDict or its dict)."""
  tree = config.to_dict() if hasattr(config, "to_dict") else config
  flat = workdir.flatten(tree)
  identity = {
    key: _json_value(value) for key, value in flat.items() if not workdir.is_resumable(key)
  }
  streams = {}
  for key, value in flat.items():
    owner = key.rpartition(".")[0]
    if key.endswith(".path") and value and flat.get(f"{owner}.kind") == "explicit":
      streams[key] = _file_sha256(str(value))
  return {"config": identity, "streams": streams, "data_order": DATA_ORDER_VERSION}


def differences(stored: dict, current: dict) -> list[str]:
  """What differs between two fingerprints, one short line per key."""
  lines = []
  if stored.get("data_order") != current["data_order"]:
    lines.append(
      f"the code's data order (version {stored.get('data_order')} -> {current['data_order']})"
    )
  old, new = workdir.comparable(stored.get("config", {}), current["config"])
  for key in sorted(set(old) | set(new)):
    if not workdir.same_value(old.get(key, "<absent>"), new.get(key, "<absent>")):
      lines.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
  old_streams, new_streams = stored.get("streams", {}), current["streams"]
  for key in sorted(set(old_streams) | set(new_streams)):
    if key in old_streams and key in new_streams and old_streams[key] != new_streams[key]:
      lines.append(
        f"the contents of {key}={new.get(key, '?')!r} (sha256 {old_streams[key][:12]} -> "
        f"{new_streams[key][:12]})"
      )
  return lines


def digest(fingerprint_: dict) -> str:
  return hashlib.sha256(json.dumps(fingerprint_, sort_keys=True).encode()).hexdigest()


def check(ckpts, current: dict, work_dir: str) -> None:
  """Refuses to resume checkpoints (a checkpoints.Checkpoints) whose stored fingerprint differs
  from `current`; sets aside the newest one when only its record is damaged."""
  while True:
    recorded = [
      (step, record["fingerprint"])
      for step, record in ckpts.records()
      if isinstance(record.get("fingerprint"), dict)
    ]
    if not recorded:
      return  # saved before fingerprints existed: config.json alone says what the run was
    (step, newest), older = recorded[0], sorted(recorded[1:])
    changed = differences(newest, current)
    if not changed:
      return
    witnesses = _witnesses(current, older, workdir.read_config(work_dir), newest)
    if not witnesses:
      raise workdir.WorkdirMismatchError(
        f"the checkpoints in {work_dir} belong to another run (their fingerprint differs: "
        f"{'; '.join(changed)}), so they cannot be resumed. Use a new --workdir, or undo the "
        "change"
      )
    ckpts.set_aside(
      step,
      f"has a damaged fingerprint in {ckpts.record_path(step)} ({'; '.join(changed)}, where "
      f"{' and '.join(witnesses)} agree with this run)",
    )


def _witnesses(current: dict, older: list, config: dict | None, newest: dict) -> list[str]:
  """What says that `newest` is damaged rather than another run's: config.json and the older
  records ((step, fingerprint) pairs), when all of them agree with `current` and together cover
  what `newest` changes. Empty when they do not."""
  if any(differences(fingerprint_, current) for _, fingerprint_ in older):
    return []
  config_agrees = config is not None and not differences(
    {**current, "config": fingerprint(config)["config"]}, current
  )
  if config is not None and not config_agrees:
    return []
  witnesses = ["config.json"] if config_agrees else []
  if older:
    steps = ", ".join(str(step) for step, _ in older)
    witnesses.append(
      f"the checkpoints at steps {steps}" if len(older) > 1 else f"the checkpoint at step {steps}"
    )
    return witnesses
  # config.json holds the config only: the streams' contents and the data order it cannot vouch for
  only_config = (
    newest.get("streams", {}) == current["streams"]
    and newest.get("data_order") == current["data_order"]
  )
  return witnesses if only_config else []
