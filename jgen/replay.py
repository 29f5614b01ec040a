r"""Replays a collapse case bit for bit, or branches from it with another config.

  python -m jgen.replay --case=runs/demo/cases/ID            # verify every digest
  python -m jgen.replay --case=runs/demo/cases/ID --dump     # + per-step metrics, frames
  python -m jgen.replay --case=runs/demo/cases/ID \
      --override=config.sampler.kind=with_replacement        # counterfactual (repeatable)

Verification restores the case's start checkpoint, checks its sha256 digests,
re-runs every step to the end of the case, and compares each step's digests of
indices, G params and D params with the recorded trace, and every part of the
state (optimizer states included) at each logged step. It prints
`verified N steps` and exits 0, or names the first step and part that differ and
exits 1. A case recorded on another platform or with other library versions is
refused (exit 2) unless --allow_mismatch, which reports the first divergence
instead of failing.

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
import functools
import json
import os
import re
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags

from jgen import cases
from jgen.collapse import detectors as collapse
from jgen.collapse import trace
from jgen.core import config as config_lib
from jgen.core import parallel
from jgen.run import checkpoints
from jgen.trainers import gan as gan_trainer
from jgen.viz import imgrid, plots

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
  now = cases.environment()
  problems = []
  for key in ("platform", "device_kind", "device_count"):
    if recorded.get(key) != now[key]:
      problems.append(f"{key}: recorded {recorded.get(key)!r}, now {now[key]!r}")
  for package, version in recorded.get("versions", {}).items():
    if package != "python" and now["versions"].get(package) != version:
      problems.append(f"{package}: recorded {version}, now {now['versions'].get(package)}")
  return problems


def _restore_start(case: dict, gan: gan_trainer.Gan, root) -> tuple[gan_trainer.TrainState, list]:
  """The case's start state in `gan`'s structure, and notes on parts that could not be kept.

  A counterfactual may change a part's shapes (another discriminator, say): that part
  and its optimizer state start from a fresh initialization (its INIT stream), the
  others from the checkpoint.
  """
  like = _abstract_state(gan, root)
  ckpts = checkpoints.Checkpoints(case["dir"], keep=1000)
  try:
    try:
      return ckpts.restore(case["start_step"], like=like), []
    except ValueError:
      stored = ckpts.restore_raw(case["start_step"])
  finally:
    ckpts.close()
  parts, notes, fresh = {}, [], None
  for owner in ("g", "d"):
    params, opt = f"{owner}_params", f"{owner}_opt_state"
    kept = [_reuse(stored[name], getattr(like, name)) for name in (params, opt)]
    if all(part is not None for part in kept):
      parts[params], parts[opt] = kept
    else:
      if fresh is None:
        fresh = gan_trainer.init_state(gan, root)
      parts[params], parts[opt] = getattr(fresh, params), getattr(fresh, opt)
      notes.append(f"{params} and {opt}: freshly initialized (the override changes their shapes)")
  step = jax.device_put(stored["step"], like.step.sharding)
  return gan_trainer.TrainState(step=step, **parts), notes


def _abstract_state(gan: gan_trainer.Gan, root) -> gan_trainer.TrainState:
  """The shapes, dtypes and shardings of `gan`'s state, without computing it. A restore needs
  only the structure, and compiling the initialization of conv models was most of an image
  replay's setup (measured, tiny stacked-digits case on a busy 2-core CPU: 7.7 of 9 s)."""
  shapes = jax.eval_shape(functools.partial(gan_trainer.init_state, gan), root)
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=gan.state_sharding), shapes
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
  path = os.path.join(case["dir"], "parts.jsonl")
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return {row["step"]: row["parts"] for row in rows}


def run_window(
  gan, state, root, data, start: int, end: int, stops: set[int], on_stop, steps_per_dispatch
) -> Branch:
  """Steps start -> end in scanned chunks that end on every step in `stops`.

  `data` is the training set, or a HostBatches positioned at `start` (`gan_trainer.step_data`).
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
    state, outputs = gan_trainer.run_chunk(gan, state, root, data, length)
    outputs = jax.device_get(outputs)
    steps = np.arange(step + 1, step + length + 1, dtype=np.uint32)
    traces.append(np.concatenate([steps[:, None], outputs["trace"]], axis=1))
    for i, s in enumerate(steps):
      metrics.append(
        {"step": int(s), **{k: float(outputs[k][i]) for k in gan_trainer.METRIC_NAMES}}
      )
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


def _first_trace_mismatch(replayed: np.ndarray, recorded: np.ndarray) -> tuple[int, list] | None:
  count = min(len(replayed), len(recorded))
  differ = replayed[:count] != recorded[:count]
  if not differ.any():
    return None
  index = int(np.argmax(differ.any(axis=1)))
  columns = ("step", *trace.TRACED_PARTS)
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
  config = cases.case_config(case)
  gan, root, data = gan_trainer.build(config)
  start, end = case["start_step"], case["end_step"]
  recorded_trace = cases.read_trace(case["dir"])
  recorded_parts = _recorded_parts(case)
  state, _ = _restore_start(case, gan, root)
  _check_parts(start, trace.part_digests(state), recorded_parts, "the start checkpoint")
  data = gan_trainer.step_data(gan, config, root, data, start, end)
  setup_seconds = time.perf_counter() - setup_clock
  frame_steps = set()
  frame_gan = gan
  if dump_dir:
    every = max(1, (end - start) // frames)
    frame_steps = set(range(start + every, end + 1, every))
    os.makedirs(os.path.join(dump_dir, "frames"), exist_ok=True)
    if "feature_metrics" in gan.eval_config:
      # A frame is a picture titled with modes and KL; the classifier-feature metrics (FID,
      # KID, birthday) would cost seconds to tens of seconds per frame, more than the replay.
      light = ml_collections.ConfigDict(gan.eval_config.to_dict())
      light.feature_metrics = False
      frame_gan = dataclasses.replace(gan, eval_config=light)

  def on_stop(step, state, replayed):
    bad = _first_trace_mismatch(replayed, recorded_trace)
    if bad is not None:
      raise ReplayMismatch(f"mismatch at step {bad[0]}: {', '.join(bad[1])} differ")
    if step in recorded_parts:
      _check_parts(step, trace.part_digests(state), recorded_parts, f"the state at step {step}")
    if step in frame_steps:
      samples, row = gan_trainer.evaluate(frame_gan, state, root)
      path = os.path.join(dump_dir, "frames", f"step_{step:08d}.png")
      gan_trainer.save_samples(path, samples, gan, title=f"replay step {step}", metrics=row)

  branch = run_window(
    gan,
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
    with open(os.path.join(dump_dir, "metrics.jsonl"), "w") as f:
      f.writelines(json.dumps(row) + "\n" for row in branch.metrics)
  if timings is not None:
    timings.update(setup_s=setup_seconds, **branch.timings)
  return len(branch.trace_rows)


def _check_parts(step, replayed: dict, recorded: dict[int, dict], what: str) -> None:
  if step not in recorded:
    return
  differ = [part for part in trace.LOGGED_PARTS if replayed[part] != recorded[step][part]]
  if differ:
    raise ReplayMismatch(
      f"mismatch at step {step}: {what} differs from the recording in {', '.join(differ)}"
    )


def counterfactual(case: dict, overrides: list[str], out_dir: str) -> dict:
  """Runs the recorded and the overridden config from the case's start; compares them."""
  original_config = cases.case_config(case)
  changed_config = cases.case_config(case)
  for override in overrides:
    config_lib.apply_override(changed_config, override)
  start, end = case["start_step"], case["end_step"]
  eval_every = original_config.train.eval_every
  eval_steps = set(range(start - start % eval_every + eval_every, end + 1, eval_every)) | {end}
  recorded_trace = cases.read_trace(case["dir"])
  results = {}
  for name, config in (("recorded", original_config), ("counterfactual", changed_config)):
    gan, root, data = gan_trainer.build(config)
    state, notes = _restore_start(case, gan, root)
    data = gan_trainer.step_data(gan, config, root, data, start, end)
    evaluations, samples = [], {}

    def on_stop(step, state, _, gan=gan, root=root, evaluations=evaluations, samples=samples):
      if step in eval_steps:
        points, row = gan_trainer.evaluate(gan, state, root)
        evaluations.append({"step": step, **row})
        samples[step] = points

    branch = run_window(
      gan, state, root, data, start, end, eval_steps, on_stop, config.train.steps_per_dispatch
    )
    detector = collapse.Detector(original_config.collapse, case.get("detector_at_start"))
    fired = []
    for row in evaluations:
      # As the run judged its rows: image rows call the reverse KL `kl`.
      hits = detector.observe(gan_trainer._for_detectors(row))
      fired += [{"step": row["step"], **hit} for hit in hits]
    mismatch = _first_trace_mismatch(branch.trace_rows, recorded_trace)
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
  _plot_branches(out_dir, results, gan, start_rows[0] if start_rows else None)
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
  """The metrics the comparison plots, of those the evaluation rows hold: 2D modes, reverse KL
  and diversity; stacked digits' modes, KL, diversity and classifier FID; other images'
  diversity."""
  keys = ("modes", "reverse_kl", "kl", "diversity", "classifier_fid")
  return [key for key in keys if any(key in row for row in rows)]


def _plot_branches(out_dir: str, results: dict, gan, start_row: dict | None) -> None:
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
    gan_trainer.save_samples(
      os.path.join(out_dir, f"{name}_final.png"),
      branch.samples[last],
      gan,
      title=f"{name}, step {last}",
      metrics=branch.evaluations[-1],
    )
  if gan.images is not None:
    rows, titles = [], []
    for step in sorted(results["recorded"]["_branch"].samples):
      for name, result in results.items():
        rows.append(list(result["_branch"].samples[step][:SIDE_BY_SIDE_SAMPLES]))
        titles.append(f"{name} {step}")
    imgrid.save_grid(
      os.path.join(out_dir, "samples.png"),
      rows,
      row_titles=titles,
      title="recorded and counterfactual samples at each evaluation",
    )


_CASE = flags.DEFINE_string("case", None, "A case directory, WORKDIR/cases/ID.")
_DUMP = flags.DEFINE_bool("dump", False, "Write per-step metrics and sample frames.")
_OVERRIDE = flags.DEFINE_multi_string(
  "override", [], "config.a.b=value for a counterfactual branch (repeatable)."
)
_ALLOW_MISMATCH = flags.DEFINE_bool(
  "allow_mismatch", False, "Replay a case from another platform or versions anyway."
)
_OUT = flags.DEFINE_string("out", None, "Output folder (default: inside the case).")


def _fail(message: str, code: int = 1) -> None:
  print(f"jgen.replay: {message}", file=sys.stderr)
  sys.exit(code)


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}")
  if not _CASE.value:
    _fail("--case is required, e.g. --case=runs/collapse_demo/cases/ID (see python -m jgen.cases)")
  try:
    case = cases.load_case(_CASE.value)
  except ValueError as error:
    _fail(str(error))
  if case["status"] != "complete":
    _fail(
      f"case {case['id']} is still {case['status']}: its run has not reached step "
      f"{case['end_step']} yet"
    )
  if case["config"].get("deterministic"):
    parallel.enable_gpu_determinism()
  problems = environment_mismatches(case["environment"])
  if problems and not _ALLOW_MISMATCH.value:
    _fail(
      "the case was recorded elsewhere, so a bit-for-bit replay is not expected to hold:\n  "
      + "\n  ".join(problems)
      + "\nPass --allow_mismatch to replay anyway and report the first divergence.",
      code=2,
    )
  slug = re.sub(r"[^\w.=-]+", "_", "+".join(_OVERRIDE.value))[:80]
  out_dir = _OUT.value or os.path.join(
    case["dir"], f"counterfactual-{slug}" if _OVERRIDE.value else "replay"
  )
  try:
    if _OVERRIDE.value:
      report = counterfactual(case, _OVERRIDE.value, out_dir)
      _print_counterfactual(report, out_dir)
      return
    steps = verify(case, dump_dir=out_dir if _DUMP.value else None)
  except ReplayMismatch as error:
    if problems:
      print(f"first divergence (recorded elsewhere: {'; '.join(problems)}): {error}")
      return
    _fail(str(error))
  except ValueError as error:
    _fail(str(error))
  print(f"verified {steps} steps ({case['start_step']} -> {case['end_step']})")
  if _DUMP.value:
    print(f"per-step metrics and frames in {out_dir}")


def _print_counterfactual(report: dict, out_dir: str) -> None:
  print(f"case {report['case']}, steps {report['window'][0]} -> {report['window'][1]}")
  print(f"override: {' '.join(report['overrides'])}")
  keys = _brief_keys(report["recorded"]["evaluations"] + report["counterfactual"]["evaluations"])
  label = "recorded " + "/".join(_BRIEF_LABELS[key] for key in keys)
  print(f"{'step':>8} | {label:>30} | {'counterfactual':>30}")
  recorded = {r["step"]: r for r in report["recorded"]["evaluations"]}
  for row in report["counterfactual"]["evaluations"]:
    old = recorded.get(row["step"], {})
    print(f"{row['step']:>8} | {_brief(old, keys):>30} | {_brief(row, keys):>30}")
  for name in ("recorded", "counterfactual"):
    result = report[name]
    verdict = "collapses" if result["collapsed"] else "does not collapse"
    detail = ", ".join(f"{d['detector']} at {d['step']}" for d in result["detectors"])
    print(f"{name}: {verdict}{f' ({detail})' if detail else ''}")
  print(f"counterfactual start state: {'; '.join(report['counterfactual']['restored'])}")
  print(
    f"first step that differs from the recording: "
    f"{report['counterfactual']['first_divergence_from_recording']}"
  )
  grids = ", samples.png" if os.path.exists(os.path.join(out_dir, "samples.png")) else ""
  print(f"written: {out_dir}/counterfactual.json, branches.png, *_final.png{grids}")


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


if __name__ == "__main__":
  app.run(main, flags_parser=config_lib.flags_parser("jgen.replay"))
