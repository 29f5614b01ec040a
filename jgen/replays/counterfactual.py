"""Counterfactual branches of a collapse case: "what if" from the case's start checkpoint.

A counterfactual runs the recorded config and the overridden one from the same
checkpoint, evaluates both at the case's evaluation steps, applies the same
detectors, and writes the metrics side by side, a plot, and whether the
collapse recurs (`python -m jgen.replay --case=... --override=config.a.b=v`).

Pictures follow the run's data: each branch's final samples, and for images
samples.png, both branches' images at every evaluation, row above row. The curves
are those the rows hold: modes, reverse KL and diversity, plus classifier FID when
the run computes it.
"""

import json
import os

from jgen.collapse import detectors, recorder
from jgen.core import config as config_lib
from jgen.core import jsonl
from jgen.replays import replay
from jgen.viz import plots

# Columns of samples.png (per branch and evaluation): enough to see a collapse, small enough
# to read one digit.
SIDE_BY_SIDE_SAMPLES = 16


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
    trainer, root, data = replay.build(config)
    state, notes = replay.restore_start(case, trainer, root)
    data = trainer.step_data(config, root, data, start, end)
    branch = run_branch(
      trainer, state, root, data, start, end, eval_steps, root, config.train.steps_per_dispatch
    )
    evaluations = branch.evaluations
    detector = detectors.Detector(original_config.collapse, case.get("detector_at_start"))
    fired = []
    for row in evaluations:
      hits = detector.observe(row)
      fired += [{"step": row["step"], **hit} for hit in hits]
    mismatch = replay.first_trace_mismatch(branch.trace_rows, recorded_trace, columns)
    results[name] = {
      "collapsed": bool(fired),
      "detectors": fired,
      "evaluations": evaluations,
      "first_divergence_from_recording": None if mismatch is None else mismatch[0],
      "restored": notes or ["the whole state, from the case's checkpoint"],
    }
    results[name]["_branch"] = branch
  os.makedirs(out_dir, exist_ok=True)
  # The run's evaluation at the start step, if any, begins both curves.
  start_rows = [r for r in case.get("rows", []) if r["step"] == start and "diversity" in r]
  _plot_branches(out_dir, results, trainer, start_rows[0] if start_rows else None, case, overrides)
  report = {
    "case": case["id"],
    "overrides": overrides,
    "window": [start, end],
    **{name: {k: v for k, v in r.items() if k != "_branch"} for name, r in results.items()},
  }
  path = os.path.join(out_dir, "counterfactual.json")
  jsonl.replace_bytes(path, json.dumps(report, indent=1).encode())
  return report


def run_branch(
  trainer, state, root, data, start: int, end: int, eval_steps: set, eval_root, steps_per_dispatch
) -> replay.Branch:
  """Steps `start` -> `end` from `state`, evaluated at each of `eval_steps` with the fixed z of
  `eval_root` (a branch trained under another seed is judged on the same z as the recorded
  run, so that its curves differ by its training only); returns the branch with its
  evaluations and samples. `state` is consumed (its buffers are donated)."""
  evaluations, samples = [], {}

  def on_stop(step, state, _):
    if step in eval_steps:
      points, row = trainer.evaluate(state, eval_root, data)
      evaluations.append({"step": step, **row})
      samples[step] = points

  branch = replay.run_window(
    trainer, state, root, data, start, end, eval_steps, on_stop, steps_per_dispatch
  )
  branch.evaluations, branch.samples = evaluations, samples
  return branch


def curve_keys(rows: list[dict]) -> list[str]:
  """The metrics the comparison plots, of those the evaluation rows hold: modes, reverse KL and
  diversity (2D and stacked digits), classifier FID when the run computes it; other images'
  diversity."""
  keys = ("modes", "reverse_kl", "diversity", "classifier_fid")
  return [key for key in keys if any(key in row for row in rows)]


def _plot_branches(out_dir, results: dict, trainer, start_row: dict | None, case, overrides):
  """Both branches' curves overlaid (from the start's evaluation, if any) and final samples;
  for images also samples.png, both branches at every evaluation (the same z in a column
  when the seed is unchanged)."""
  branches = {
    name: ([start_row] if start_row else []) + result["evaluations"]
    for name, result in results.items()
  }
  keys = curve_keys([row for rows in branches.values() for row in rows])
  plots.compare_branches(
    os.path.join(out_dir, "branches.png"), branches, keys, case=case["id"], overrides=overrides
  )
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
