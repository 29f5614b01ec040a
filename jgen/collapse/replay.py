"""Replay of a collapse case bit for bit, and counterfactual branches from it.

Verification restores the case's start checkpoint, checks its sha256 digests,
re-runs every step to the end of the case, and compares each step's digests of
indices, G params and D params with the recorded trace, and every part of the
state (optimizer states included) at each logged step. It prints
the number of verified steps, or raises ReplayMismatch naming the first step and
part that differ. `environment_mismatches` says whether the case was recorded on
another platform or with other library versions (the command refuses those).

A counterfactual runs the recorded config and the overridden one from the same
checkpoint, evaluates both at the case's evaluation steps, applies the same
detectors, and writes the metrics side by side, a plot, and whether the
collapse recurs.

Pictures follow the run's data: scatter plots over a 2D mixture's modes, or grids
of generated images (frames, each branch's final samples, and samples.png: both
branches' images at every evaluation, row above row). The curves are those the
data has: modes, reverse KL and diversity (2D); modes, KL and diversity, plus
classifier FID when the run computes it (stacked digits); diversity (other images).
"""

import dataclasses
import json
import os
import time

import jax
import ml_collections
import numpy as np

from jgen import trainers
from jgen.collapse import detectors, recorder, trace
from jgen.core import config as config_lib
from jgen.run import checkpoints, jsonl, loop
from jgen.viz import plots

# Columns of samples.png (per branch and evaluation): enough to see a collapse, small enough
# to read one digit.
SIDE_BY_SIDE_SAMPLES = 16


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


def _restore_start(case: dict, trainer, root) -> tuple[object, list]:
  """The case's start state in `trainer`'s structure, and notes on parts that could not be kept.

  A counterfactual may change a part's shapes (another discriminator, say): that part
  and its optimizer state start from a fresh initialization (its INIT stream), the
  others from the checkpoint.
  """
  like = _abstract_state(trainer, root)
  ckpts = checkpoints.Checkpoints(case["dir"], keep=1000)
  try:
    try:
      return ckpts.restore(case["start_step"], like=like), []
    except ValueError:
      stored = ckpts.restore_raw(case["start_step"])
  finally:
    ckpts.close()
  parts, fresh_names, fresh = {}, [], None
  for field in dataclasses.fields(like):
    if field.name == "step":
      parts["step"] = jax.device_put(stored["step"], like.step.sharding)
      continue
    kept = _reuse(stored[field.name], getattr(like, field.name))
    if kept is None:
      if fresh is None:
        fresh = trainer.init_state(root)
      kept = getattr(fresh, field.name)
      fresh_names.append(field.name)
    parts[field.name] = kept
  notes = [
    f"{' and '.join(names)}: freshly initialized (the override changes their shapes)"
    for names in _by_owner(fresh_names)
  ]
  return type(like)(**parts), notes


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


def _first_trace_mismatch(
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
  state, _ = _restore_start(case, trainer, root)
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
    bad = _first_trace_mismatch(replayed, recorded_trace, columns)
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


def counterfactual(case: dict, overrides: list[str], out_dir: str) -> dict:
  """Runs the recorded and the overridden config from the case's start; compares them."""
  original_config = recorder.case_config(case)
  changed_config = recorder.case_config(case)
  for override in overrides:
    config_lib.apply_override(changed_config, override)
  start, end = case["start_step"], case["end_step"]
  eval_every = original_config.train.eval_every
  eval_steps = set(range(start - start % eval_every + eval_every, end + 1, eval_every)) | {end}
  recorded_trace = recorder.read_trace(case)
  columns = recorder.traced_columns(case)
  results = {}
  for name, config in (("recorded", original_config), ("counterfactual", changed_config)):
    trainer, root, data = build(config)
    state, notes = _restore_start(case, trainer, root)
    data = trainer.step_data(config, root, data, start, end)
    evaluations, samples = [], {}

    def on_stop(
      step,
      state,
      _,
      trainer=trainer,
      root=root,
      data=data,
      evaluations=evaluations,
      samples=samples,
    ):
      if step in eval_steps:
        points, row = trainer.evaluate(state, root, data)
        evaluations.append({"step": step, **row})
        samples[step] = points

    branch = run_window(
      trainer, state, root, data, start, end, eval_steps, on_stop, config.train.steps_per_dispatch
    )
    detector = detectors.Detector(original_config.collapse, case.get("detector_at_start"))
    fired = []
    for row in evaluations:
      hits = detector.observe(row)
      fired += [{"step": row["step"], **hit} for hit in hits]
    mismatch = _first_trace_mismatch(branch.trace_rows, recorded_trace, columns)
    results[name] = {
      "collapsed": bool(fired),
      "detectors": fired,
      "evaluations": evaluations,
      "first_divergence_from_recording": None if mismatch is None else mismatch[0],
      "restored": notes or ["the whole state, from the case's checkpoint"],
    }
    branch.evaluations, branch.samples = evaluations, samples
    results[name]["_branch"] = branch
  os.makedirs(out_dir, exist_ok=True)
  # The run's evaluation at the start step, if any, begins both curves.
  start_rows = [r for r in case.get("rows", []) if r["step"] == start and "diversity" in r]
  _plot_branches(out_dir, results, trainer, start_rows[0] if start_rows else None)
  report = {
    "case": case["id"],
    "overrides": overrides,
    "window": [start, end],
    **{name: {k: v for k, v in r.items() if k != "_branch"} for name, r in results.items()},
  }
  with open(os.path.join(out_dir, "counterfactual.json"), "w") as f:
    json.dump(report, f, indent=1)
  return report


def curve_keys(rows: list[dict]) -> list[str]:
  """The metrics the comparison plots, of those the evaluation rows hold: modes, reverse KL and
  diversity (2D and stacked digits), classifier FID when the run computes it; other images'
  diversity."""
  keys = ("modes", "reverse_kl", "diversity", "classifier_fid")
  return [key for key in keys if any(key in row for row in rows)]


def _plot_branches(out_dir: str, results: dict, trainer, start_row: dict | None) -> None:
  """Both branches' curves overlaid (from the start's evaluation, if any) and final samples;
  for images also samples.png, both branches at every evaluation (the same z in a column
  when the seed is unchanged)."""
  branches = {
    name: ([start_row] if start_row else []) + result["evaluations"]
    for name, result in results.items()
  }
  keys = curve_keys([row for rows in branches.values() for row in rows])
  plots.compare_branches(os.path.join(out_dir, "branches.png"), branches, keys)
  for name, result in results.items():
    branch = result["_branch"]
    last = max(branch.samples)
    trainer.picture(
      os.path.join(out_dir, f"{name}_final.png"),
      branch.samples[last],
      f"{name}, step {last}",
      branch.evaluations[-1],
    )
  rows, titles = [], []
  for step in sorted(results["recorded"]["_branch"].samples):
    for name, result in results.items():
      rows.append(result["_branch"].samples[step][:SIDE_BY_SIDE_SAMPLES])
      titles.append(f"{name} {step}")
  trainer.data.side_by_side(
    os.path.join(out_dir, "samples.png"),
    rows,
    titles,
    "recorded and counterfactual samples at each evaluation",
  )


def counterfactual_text(report: dict, out_dir: str) -> str:
  """The counterfactual report as the command prints it: a side-by-side table and verdicts."""
  lines = []
  say = lines.append
  say(f"case {report['case']}, steps {report['window'][0]} -> {report['window'][1]}")
  say(f"override: {' '.join(report['overrides'])}")
  keys = _brief_keys(report["recorded"]["evaluations"] + report["counterfactual"]["evaluations"])
  label = "recorded " + "/".join(_BRIEF_LABELS[key] for key in keys)
  say(f"{'step':>8} | {label:>30} | {'counterfactual':>30}")
  recorded = {r["step"]: r for r in report["recorded"]["evaluations"]}
  for row in report["counterfactual"]["evaluations"]:
    old = recorded.get(row["step"], {})
    say(f"{row['step']:>8} | {_brief(old, keys):>30} | {_brief(row, keys):>30}")
  for name in ("recorded", "counterfactual"):
    result = report[name]
    verdict = "collapses" if result["collapsed"] else "does not collapse"
    detail = ", ".join(f"{d['detector']} at {d['step']}" for d in result["detectors"])
    say(f"{name}: {verdict}{f' ({detail})' if detail else ''}")
  say(f"counterfactual start state: {'; '.join(report['counterfactual']['restored'])}")
  say(
    f"first step that differs from the recording: "
    f"{report['counterfactual']['first_divergence_from_recording']}"
  )
  grids = ", samples.png" if os.path.exists(os.path.join(out_dir, "samples.png")) else ""
  say(f"written: {out_dir}/counterfactual.json, branches.png, *_final.png{grids}")
  return "\n".join(lines)


_BRIEF_LABELS = {"modes": "modes", "reverse_kl": "rKL", "kl": "KL", "diversity": "diversity"}


def _brief_keys(rows: list[dict]) -> list[str]:
  return [key for key in curve_keys(rows) if key in _BRIEF_LABELS]


def _brief(row: dict, keys: list[str]) -> str:
  if not row:
    return "-"
  texts = []
  for key in keys:
    value = row.get(key)
    if key == "modes":
      texts.append(str(value))
    else:  # a KL is None (logged NaN) when no sample lands near a mode
      texts.append("nan" if value is None else f"{value:.3f}")
  return " / ".join(texts)
