"""Replay of a collapse case, bit for bit.

Verification restores the case's start checkpoint, checks its sha256 digests, re-runs every
step to the end of the case, and compares each step's digests of the data indices and the
traced parts (G and D params for a GAN) with the recorded trace, and every part of the state
(optimizer states included) at each logged step. It returns the number of verified steps, or
raises ReplayMismatch naming the first step and part that differ; with a dump folder it also
writes per-step metrics and frames (the run's own pictures). `environment_mismatches` says
whether the case was recorded on another platform or with other library versions.
Counterfactual branches from a case are jgen/replays/counterfactual.py.
"""

import dataclasses
import os
import time

import jax
import ml_collections
import numpy as np

from jgen import trainers
from jgen.collapse import recorder
from jgen.core import jsonl
from jgen.run import checkpoints, loop, trace


class ReplayMismatch(Exception):
  pass


@dataclasses.dataclass
class Branch:
  """One run of a case's window: its trace, metrics and evaluations."""

  trace_rows: np.ndarray  # [steps, 1 + parts]: step, then TRACED_PARTS digests
  metrics: list[dict]
  evaluations: list[dict]
  samples: dict  # step -> samples at that evaluation
  timings: dict  # seconds: first chunk (with compilation), the steady rest


# `--case=WORKDIR/cases/first` or `.../latest`: the README's commands work whatever ids a run's
# cases got (an id holds its trigger step, which depends on the run).
CASE_ALIASES = ("first", "latest")


def resolve_case(case_dir: str) -> str:
  """The case folder `case_dir` names: itself, or the first or latest case of its cases/.

  A folder that does not exist is refused with the cases that do, and the command to list them.
  """
  case_dir = os.path.normpath(case_dir)
  if os.path.isdir(case_dir):
    return case_dir
  cases_dir, name = os.path.split(case_dir)
  existing = sorted(os.listdir(cases_dir)) if os.path.isdir(cases_dir) else []
  if name in CASE_ALIASES and existing:
    return os.path.join(cases_dir, existing[0 if name == "first" else -1])
  run_dir = os.path.dirname(cases_dir) or "."
  if not existing:
    raise ValueError(
      f"{case_dir} is not a case, and {cases_dir} holds none: a run's cases are in "
      f"WORKDIR/cases/ (list them with python -m jgen.cases --workdir=WORKDIR)"
    )
  raise ValueError(
    f"{case_dir} is not a case; {cases_dir} holds {', '.join(existing)} (or name "
    f"{cases_dir}/first or {cases_dir}/latest; python -m jgen.cases --workdir={run_dir} "
    "lists them)"
  )


def environment_mismatches(recorded: dict) -> list[str]:
  now = recorder.environment()
  problems = []
  for key in ("platform", "device_kind", "device_count"):
    if recorded.get(key) != now[key]:
      problems.append(f"{key}: recorded {recorded.get(key)!r}, now {now[key]!r}")
  for package, version in recorded.get("versions", {}).items():
    if package != "python" and now["versions"].get(package) != version:
      problems.append(f"{package}: recorded {version}, now {now['versions'].get(package)}")
  return problems


def build(config: ml_collections.ConfigDict):
  """(trainer, root, data) of the case's trainer, as its run built them."""
  return trainers.get_trainer(config.trainer).build(config)


def restore_start(case: dict, trainer, root) -> tuple[object, list]:
  """The case's start state in `trainer`'s structure, and notes on parts that could not be kept.

  A counterfactual may change a part's shapes (another discriminator, say): that part
  and its optimizer state start from a fresh initialization (its INIT stream), the
  others from the checkpoint.
  """
  like = _abstract_state(trainer, root)
  step_dir = os.path.join(case["dir"], "checkpoints", str(case["start_step"]))
  if not os.path.isdir(step_dir):
    raise recorder.DamagedCaseError(
      f"case {case['id']} has no checkpoint at its start step {case['start_step']} "
      f"({step_dir} is missing), so it cannot be replayed; re-record it by rerunning its run "
      "in a new --workdir"
    )
  ckpts = checkpoints.Checkpoints(case["dir"], keep=1000)
  try:
    try:
      return ckpts.restore(case["start_step"], like=like), []
    except ValueError:
      try:
        stored = ckpts.restore_raw(case["start_step"])
      except Exception as error:  # a damaged checkpoint fails both ways
        raise _damaged(case, step_dir, error) from None
    except Exception as error:
      raise _damaged(case, step_dir, error) from None
  finally:
    ckpts.close()
  return carry_over(stored, trainer, root)


def carry_over(stored: dict, trainer, root, reset=()) -> tuple[object, list]:
  """A start state in `trainer`'s structure from `stored` (field name -> tree, as a checkpoint
  or a state on the host holds them), and notes on the parts that were not kept.

  Each part whose shapes fit is kept; a part whose shapes differ (another discriminator, say),
  or that `reset` names, starts from a fresh initialization (its INIT stream of `root`). The
  step is always kept: the data order and noise go on from it.
  """
  like = _abstract_state(trainer, root)
  names = [field.name for field in dataclasses.fields(like)]
  unknown = sorted(set(reset) - set(names) | ({"step"} & set(reset)))
  if unknown:
    raise ValueError(f"cannot reset {', '.join(unknown)}; the state's parts: {', '.join(names)}")
  parts, changed, reset_names, fresh = {}, [], [], None
  for name in names:
    if name == "step":
      parts["step"] = jax.device_put(stored["step"], like.step.sharding)
      continue
    kept = None if name in reset else _reuse(stored[name], getattr(like, name))
    if kept is None:
      if fresh is None:
        fresh = trainer.init_state(root)  # compiled once per trainer, however many branches
      kept = getattr(fresh, name)
      (reset_names if name in reset else changed).append(name)
    parts[name] = kept
  notes = [
    f"{' and '.join(group)}: freshly initialized (the override changes their shapes)"
    for group in _by_owner(changed)
  ] + [f"{' and '.join(group)}: freshly initialized (reset)" for group in _by_owner(reset_names)]
  return type(like)(**parts), notes


def _damaged(case: dict, step_dir: str, error: Exception) -> Exception:
  lines = str(error).strip().splitlines()
  return recorder.DamagedCaseError(
    f"the start checkpoint of case {case['id']} ({step_dir}) cannot be read "
    f"({type(error).__name__}: {lines[0][:160] if lines else ''}); the case is damaged: "
    "re-record it by rerunning its run in a new --workdir"
  )


def _by_owner(names: list[str]) -> list[list[str]]:
  """Groups state parts by the network they belong to: g_params with g_opt_state."""
  groups: dict[str, list[str]] = {}
  for name in names:
    groups.setdefault(name.split("_")[0], []).append(name)
  return list(groups.values())


def _abstract_state(trainer, root):
  """The shapes, dtypes and shardings of `trainer`'s state, without computing it. A restore
  needs only the structure, and compiling the initialization of conv models was most of an
  image replay's setup (measured, tiny stacked-digits case on a busy 2-core CPU: 7.7 of 9 s)."""
  shapes = jax.eval_shape(trainer.init_state, root)
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=trainer.state_sharding), shapes
  )


def _reuse(stored_tree, like_tree):
  """`stored_tree`'s arrays in `like_tree`'s structure and shardings, or None if the shapes
  differ."""
  stored, (fresh, treedef) = jax.tree.leaves(stored_tree), jax.tree.flatten(like_tree)
  if [np.shape(x) for x in stored] != [np.shape(x) for x in fresh]:
    return None
  placed = [jax.device_put(x, f.sharding) for x, f in zip(stored, fresh, strict=True)]
  return jax.tree.unflatten(treedef, placed)


def _recorded_parts(case: dict) -> dict[int, dict]:
  rows = jsonl.read_rows(os.path.join(case["dir"], "parts.jsonl"))
  return {row["step"]: row["parts"] for row in rows}


def run_window(
  trainer, state, root, data, start: int, end: int, stops: set[int], on_stop, steps_per_dispatch
) -> Branch:
  """Steps start -> end in scanned chunks that end on every step in `stops`.

  `data` is what `trainer.step_data` gives for the window (the training set, or the host
  batches of exactly its steps).
  `on_stop(step, state)` runs at each stop (and at `end`) and may raise to end early.
  """
  traces, metrics = [], []
  step = start
  boundaries = sorted(s for s in stops | {end} if start < s <= end)
  clock = time.perf_counter()
  timings = {"first_chunk_s": 0.0, "steady_s": 0.0, "steady_steps": 0}
  while step < end:
    next_stop = next(s for s in boundaries if s > step)
    length = min(steps_per_dispatch, next_stop - step)
    state, outputs = loop.run_chunk(trainer, state, root, data, length)
    outputs = jax.device_get(outputs)
    steps = np.arange(step + 1, step + length + 1, dtype=np.uint32)
    traces.append(np.concatenate([steps[:, None], outputs["trace"]], axis=1))
    for i, s in enumerate(steps):
      metrics.append({"step": int(s), **{k: float(outputs[k][i]) for k in trainer.metric_names}})
    step += length
    if step in boundaries:
      on_stop(step, state, np.concatenate(traces))
    # The first chunk carries the compilation; the rest is the replay's steady speed.
    now = time.perf_counter()
    if len(traces) == 1:
      timings["first_chunk_s"] = now - clock
    else:
      timings["steady_s"] += now - clock
      timings["steady_steps"] += length
    clock = now
  return Branch(np.concatenate(traces), metrics, [], {}, timings)


def first_trace_mismatch(
  replayed: np.ndarray, recorded: np.ndarray, columns: tuple[str, ...]
) -> tuple[int, list] | None:
  count = min(len(replayed), len(recorded))
  differ = replayed[:count] != recorded[:count]
  if not differ.any():
    return None
  index = int(np.argmax(differ.any(axis=1)))
  parts = [
    f"{columns[c]} (recorded {recorded[index, c]:#010x}, replayed {replayed[index, c]:#010x})"
    for c in np.flatnonzero(differ[index])
  ]
  return int(recorded[index, 0]), parts


def replay_to(case: dict, step: int, built: tuple | None = None) -> tuple:
  """(trainer, root, data, state at `step`): the recorded run from the case's start checkpoint
  to `step` (start < step <= end), every step checked against the recorded trace; raises
  ReplayMismatch naming the first step that differs. A branch that should start where the
  detectors fired, not at the checkpoint before, starts from this state.

  `built` is (trainer, root, data) of the case's config, to reuse a trainer's compiled steps
  across cases (default: `build` it).
  """
  config = recorder.case_config(case)
  trainer, root, data = built or build(config)
  start, end = case["start_step"], case["end_step"]
  if not start < step <= end:
    raise ValueError(f"case {case['id']} records steps {start} -> {end}; cannot replay to {step}")
  state, notes = restore_start(case, trainer, root)
  if notes:
    raise recorder.DamagedCaseError(
      f"case {case['id']}'s config does not fit its checkpoint ({'; '.join(notes)})"
    )
  recorded_trace = recorder.read_trace(case)
  columns = recorder.traced_columns(case)
  data = trainer.step_data(config, root, data, start, step)
  reached = {}

  def on_stop(at, state, replayed):
    bad = first_trace_mismatch(replayed, recorded_trace, columns)
    if bad is not None:
      raise ReplayMismatch(f"mismatch at step {bad[0]}: {', '.join(bad[1])} differ")
    reached["state"] = state

  steps = config.train.steps_per_dispatch
  run_window(trainer, state, root, data, start, step, set(), on_stop, steps)
  return trainer, root, data, reached["state"]


def verify(
  case: dict, dump_dir: str | None = None, frames: int = 20, timings: dict | None = None
) -> int:
  """Replays the case; returns the number of verified steps or raises ReplayMismatch.

  `timings`, if given, receives where the time went (setup, first chunk, steady steps).
  """
  setup_clock = time.perf_counter()
  config = recorder.case_config(case)
  trainer, root, data = build(config)
  start, end = case["start_step"], case["end_step"]
  recorded_trace = recorder.read_trace(case)
  columns = recorder.traced_columns(case)
  recorded_parts = _recorded_parts(case)
  state, notes = restore_start(case, trainer, root)
  if notes:  # verification replays the recorded run: its config must fit its checkpoint
    raise recorder.DamagedCaseError(
      f"{os.path.join(case['dir'], recorder.CASE_FILE)}'s config does not fit the case's "
      f"checkpoint ({'; '.join(n.split(':')[0] for n in notes)} have other shapes): was "
      "case.json edited? Restore it, or branch with --override=config.a.b=value instead"
    )
  _check_parts(start, trace.part_digests(state), recorded_parts, "the start checkpoint")
  data = trainer.step_data(config, root, data, start, end)
  setup_seconds = time.perf_counter() - setup_clock
  frame_steps = set()
  frame_trainer = trainer
  if dump_dir:
    every = max(1, (end - start) // frames)
    frame_steps = set(range(start + every, end + 1, every))
    os.makedirs(os.path.join(dump_dir, "frames"), exist_ok=True)
    if "feature_metrics" in getattr(trainer, "eval_config", {}):
      # A frame is a picture titled with modes and KL; the classifier-feature metrics (FID,
      # KID, birthday) would cost seconds to tens of seconds per frame, more than the replay.
      light = ml_collections.ConfigDict(trainer.eval_config.to_dict())
      light.feature_metrics = False
      frame_trainer = dataclasses.replace(trainer, eval_config=light)

  def on_stop(step, state, replayed):
    bad = first_trace_mismatch(replayed, recorded_trace, columns)
    if bad is not None:
      raise ReplayMismatch(f"mismatch at step {bad[0]}: {', '.join(bad[1])} differ")
    if step in recorded_parts:
      _check_parts(step, trace.part_digests(state), recorded_parts, f"the state at step {step}")
    if step in frame_steps:
      samples, row = frame_trainer.evaluate(state, root, data)
      path = os.path.join(dump_dir, "frames", f"step_{step:08d}.png")
      trainer.picture(path, samples, f"replay step {step}", row)

  branch = run_window(
    trainer,
    state,
    root,
    data,
    start,
    end,
    set(recorded_parts) | frame_steps,
    on_stop,
    config.train.steps_per_dispatch,
  )
  if len(branch.trace_rows) != len(recorded_trace):
    raise ReplayMismatch(
      f"the case records {len(recorded_trace)} steps but the replay ran "
      f"{len(branch.trace_rows)} ({start} -> {end})"
    )
  if dump_dir:
    jsonl.write_rows(os.path.join(dump_dir, "metrics.jsonl"), branch.metrics)
  if timings is not None:
    timings.update(setup_s=setup_seconds, **branch.timings)
  return len(branch.trace_rows)


def _check_parts(step, replayed: dict, recorded: dict[int, dict], what: str) -> None:
  if step not in recorded:
    return
  differ = [part for part in replayed if replayed[part] != recorded[step].get(part)]
  if differ:
    raise ReplayMismatch(
      f"mismatch at step {step}: {what} differs from the recording in {', '.join(differ)}"
    )
