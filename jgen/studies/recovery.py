"""The recovery study: once a generator has lost modes, does it come back, and what brings it back?

configs/study_recovery.py. Stage 1: one traced run per seed (W/cells/record-seedNNN/), stopped at
its first mode drop, until `study.num_cases` seeds have a case. Stage 2: one cell per case
(W/cells/case-seedNNN/): the case is replayed from its checkpoint to its trigger (each step
checked against the recorded trace), and each intervention runs `study.window` steps from that
state. A finished branch is kept in branches/NAME.json, so an interrupted case resumes by
intervention; a cell with outcome.json is never rerun. W/report.md, report.json and
modes_over_time.png are rebuilt after every cell (their text and plot:
jgen/studies/recovery_report.py).

Branches run one at a time, not vmapped over interventions or cases: at the study's sizes a
population measured 1,933 member-steps/s at P = 6 against 1,965 at P = 1 on this 2-core CPU
(`jgen.benchmark --population_sizes`), so vmapping buys nothing here, and a single run keeps
`none` bit for bit the recorded run continued (a vmapped member matches it only up to rounding).
Each intervention's trainer is built once and serves every case, so it compiles once.
"""

import dataclasses
import json
import os
import statistics
import time

import jax
import ml_collections
from absl import logging

from jgen.collapse import recorder
from jgen.core import jsonl
from jgen.replays import counterfactual, replay
from jgen.studies import effects, runner, stats
from jgen.studies.recovery_report import REFERENCE, plot_report, report_markdown
from jgen.trainers import gan as gan_trainer

REPORT_FILE = "report.md"
# Keys that may change on a rerun (jgen/studies/runner.py): they choose how many cells exist.
RESUMABLE_CHANGES = ("study.num_cases", "study.max_seeds")
RECORD_KEYS = ("seed", "case", "cpu_seconds")  # what the report reads of a stage-1 outcome
CASE_KEYS = ("case", "branches", "cpu_seconds")  # and of a stage-2 outcome
REGAIN = (
  "The *lost modes* of a case are the modes with no high-quality sample at its trigger "
  "evaluation (the one at which the mode-drop detector fired) that the run had captured at some "
  "earlier evaluation. A branch *regains* them if at some evaluation in its window (every "
  "{every} steps up to {window:,} steps after the trigger) every lost mode has at least one "
  "high-quality sample, all at the same evaluation (PacGAN's criterion: a sample within 3 sigma "
  "of the mode, {samples:,} samples). The secondary endpoint asks the same of the window's last "
  "evaluation only."
)


def interventions(config) -> list[str]:
  names = runner.axis(config, "study.interventions", list(config.study.settings))
  if REFERENCE not in names:
    raise ValueError(f"study.interventions must include {REFERENCE!r}, the tests' reference")
  return [REFERENCE, *(name for name in names if name != REFERENCE)]


def record_config(config, seed: int) -> ml_collections.ConfigDict:
  return runner.cell_config(config.base, {"seed": seed})


def branch_config(case_config, setting) -> ml_collections.ConfigDict:
  """The case's run config as the intervention changes it for the window."""
  seed = {"seed": case_config.seed + setting.seed_offset}
  return runner.cell_config(case_config, setting.overrides, seed)


def resets(setting) -> tuple[str, ...]:
  return tuple(name.strip() for name in setting.reset.split(",") if name.strip())


class Trainers:
  """The GAN trainers of the study, one per config up to its seed: the seed enters through the
  root and the training set, never the trainer, so a trainer (and its compiled steps) serves
  every case."""

  def __init__(self):
    self._built = {}

  def __call__(self, config) -> tuple:
    key = json.dumps({**config.to_dict(), "seed": None}, sort_keys=True, default=str)
    if key not in self._built:
      self._built[key] = gan_trainer.Gan.from_config(config)
    trainer = self._built[key]
    root = gan_trainer.run_root(trainer, config.seed)
    data = None if trainer.sample_indices is None else gan_trainer.training_set(trainer, root)
    return trainer, root, data


def lost_modes(rows: list[dict], trigger_step: int) -> list[int]:
  """The modes missing at the trigger evaluation that an earlier evaluation captured."""
  evaluations = [row for row in rows if "mode_counts" in row]
  at_trigger = next(row for row in evaluations if row["step"] == trigger_step)["mode_counts"]
  before = [row["mode_counts"] for row in evaluations if row["step"] < trigger_step]
  return [k for k, count in enumerate(at_trigger) if count == 0 and any(c[k] > 0 for c in before)]


def record(run_config, cell_dir: str, work_dir: str) -> dict:
  """Stage 1: trains (or resumes) one seed's run; its first mode-drop case, if any."""
  clock = time.process_time()
  runner.train(run_config, cell_dir)
  cases = [c for c in recorder.list_cases(cell_dir) if c["status"] == "complete"]
  cases = [c for c in cases if "mode_drop" in {d["detector"] for d in c["detectors"]}]
  found = None
  if cases:
    case = cases[0]
    rows = jsonl.read_rows(os.path.join(cell_dir, "metrics.jsonl"))
    trigger = case["trigger_step"]
    found = {
      "id": case["id"],
      "dir": os.path.relpath(case["dir"], work_dir),
      "start_step": case["start_step"],
      "trigger_step": trigger,
      "modes": case["trigger_row"]["modes"],
      "mode_counts": case["trigger_row"]["mode_counts"],
      "lost_modes": lost_modes(rows, trigger),
    }
  return {"seed": run_config.seed, "case": found, "cpu_seconds": time.process_time() - clock}


def branch_case(config, work_dir: str, found: dict, cell_dir: str, trainers: Trainers) -> dict:
  """Stage 2: every intervention's branch from the case's trigger state (finished branches are
  read back from cell_dir/branches/)."""
  clock = time.process_time()
  case = recorder.load_case(os.path.join(work_dir, found["dir"]))
  case_config = recorder.case_config(case)
  trigger, window, every = found["trigger_step"], config.study.window, config.study.eval_every
  trainer, root, data, state = replay.replay_to(case, trigger, trainers(case_config))
  host = jax.device_get(state)  # every branch starts from this copy: a window donates its state
  _, row = trainer.evaluate(state, root, data)
  stored = {field.name: getattr(host, field.name) for field in dataclasses.fields(host)}
  end = trigger + window
  eval_steps = set(range(trigger + every, end + 1, every)) | {end}
  branches = {}
  for name in interventions(config):
    path = os.path.join(cell_dir, "branches", f"{name}.json")
    if os.path.exists(path):
      with open(path) as f:
        branches[name] = json.load(f)
      continue
    started = time.process_time()
    setting = config.study.settings[name]
    run_config = branch_config(case_config, setting)
    b_trainer, b_root, b_data = trainers(run_config)
    b_state, notes = replay.carry_over(stored, b_trainer, b_root, resets(setting))
    b_data = b_trainer.step_data(run_config, b_root, b_data, trigger, end)
    per_dispatch = run_config.train.steps_per_dispatch
    branch = counterfactual.run_branch(
      b_trainer, b_state, b_root, b_data, trigger, end, eval_steps, root, per_dispatch
    )
    branches[name] = {
      "notes": notes or ["the whole state at the trigger, kept"],
      # [steps after the trigger, modes, mode_counts]
      "evaluations": [
        [r["step"] - trigger, r["modes"], r["mode_counts"]] for r in branch.evaluations
      ],
      "cpu_seconds": time.process_time() - started,
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    runner.write_json(path, branches[name])
  outcome_case = {
    **found,
    "replayed_steps": trigger - found["start_step"],
    # The replayed state, evaluated on the run's z, gives the recorded trigger evaluation.
    "trigger_reproduced": list(row["mode_counts"]) == list(found["mode_counts"]),
  }
  cpu = time.process_time() - clock
  return {"case": outcome_case, "branches": branches, "cpu_seconds": cpu}


def regained(lost: list[int], evaluations: list) -> tuple[bool, bool, int | None]:
  """(regained at some evaluation, at the last one, steps after the trigger to the first)."""
  hits = [offset for offset, _, counts in evaluations if all(counts[k] > 0 for k in lost)]
  last = evaluations[-1][0]
  return bool(hits), last in hits, (hits[0] if hits else None)


def _rate(successes: int, trials: int) -> dict:
  low, high = stats.wilson_interval(successes, trials)
  rate = successes / trials if trials else None
  return {"count": successes, "trials": trials, "rate": rate, "wilson_95": [low, high]}


def _summary(name: str, setting, outcomes: list[dict]) -> tuple[dict, list]:
  """One intervention over every case: its rates, modes over time, and the per-case flags."""
  runs = [o["branches"][name]["evaluations"] for o in outcomes]
  flags = [regained(o["case"]["lost_modes"], run) for o, run in zip(outcomes, runs, strict=True)]
  curve = [[0, statistics.fmean(o["case"]["modes"] for o in outcomes)]]
  curve += [[at[0], statistics.fmean(run[i][1] for run in runs)] for i, at in enumerate(runs[0])]
  mean, error = stats.mean_and_standard_error([run[-1][1] for run in runs])
  firsts = [first for _, _, first in flags if first is not None]
  summary = {
    "name": name,
    "setting": setting.to_dict(),
    "notes": outcomes[0]["branches"][name]["notes"],
    "regained": _rate(sum(f[0] for f in flags), len(flags)),
    "regained_at_end": _rate(sum(f[1] for f in flags), len(flags)),
    "median_steps_to_regain": statistics.median(firsts) if firsts else None,
    "modes_at_end": {"mean": mean, "standard_error": error},
    "modes_over_time": curve,
  }
  return summary, flags


def _mcnemar(reference: list, flags: list, index: int) -> dict:
  pairs = list(zip(reference, flags, strict=True))
  only_none = sum(a[index] and not b[index] for a, b in pairs)
  only_this = sum(b[index] and not a[index] for a, b in pairs)
  p_value = stats.mcnemar_exact(only_none, only_this)
  return {"only_none": only_none, "only_intervention": only_this, "p_value": p_value}


def build_report(config, records: list[dict], outcomes: list[dict]) -> dict:
  """Stage 1's cases and, per intervention, regain rates, modes over time and McNemar's exact
  test against `none` on the same cases (Holm-adjusted over the interventions)."""
  found = [r for r in records if r["case"] is not None]
  report = {
    "regain_definition": REGAIN.format(
      every=config.study.eval_every,
      window=config.study.window,
      samples=config.base.eval.num_samples,
    ),
    "stage1": {
      "seeds_run": [r["seed"] for r in records],
      "seeds_with_case": [r["seed"] for r in found],
      "trigger_steps": [r["case"]["trigger_step"] for r in found],
      "lost_modes_per_case": [len(r["case"]["lost_modes"]) for r in found],
      "cpu_seconds": sum(r["cpu_seconds"] for r in records),
    },
    "cases": len(outcomes),
    "interventions": [],
  }
  if not outcomes:
    return report
  report["verification"] = {
    "replayed_steps": sum(o["case"]["replayed_steps"] for o in outcomes),
    "triggers_reproduced": sum(o["case"]["trigger_reproduced"] for o in outcomes),
  }
  report["stage2_cpu_seconds"] = sum(o["cpu_seconds"] for o in outcomes)
  flags = {}
  for name in interventions(config):
    summary, flags[name] = _summary(name, config.study.settings[name], outcomes)
    report["interventions"].append(summary)
  for entry in report["interventions"][1:]:  # `none` comes first (interventions())
    entry["mcnemar_regained"] = _mcnemar(flags[REFERENCE], flags[entry["name"]], 0)
    entry["mcnemar_regained_at_end"] = _mcnemar(flags[REFERENCE], flags[entry["name"]], 1)
  p_values = {e["name"]: e["mcnemar_regained"]["p_value"] for e in report["interventions"][1:]}
  for entry in report["interventions"][1:]:
    entry["mcnemar_regained"]["holm_p_value"] = effects.holm(p_values)[entry["name"]]
  return stats.finite_or_none(report)


def run_study(config: ml_collections.ConfigDict, work_dir: str) -> dict:
  """Records the cases (stage 1), then branches each under every intervention (stage 2);
  rewrites the report after every cell; returns it."""
  parts = [field.name for field in dataclasses.fields(gan_trainer.TrainState)]
  for name in interventions(config):  # a bad setting fails before anything trains
    setting = config.study.settings[name]
    gan_trainer.Gan.from_config(branch_config(config.base, setting))
    if not set(resets(setting)) <= set(parts) - {"step"}:
      raise ValueError(f"study.settings.{name}.reset={setting.reset!r}: parts are {parts[1:]}")
  trainers, records = Trainers(), []

  def write(records: list[dict], outcomes: list[dict]) -> dict:
    report = build_report(config, records, outcomes)
    runner.save_report(work_dir, report, report_markdown(config, report), REPORT_FILE)
    if report["interventions"]:
      plot_report(os.path.join(work_dir, "modes_over_time.png"), report)
    return report

  def write_records(finished) -> list[dict]:
    write([outcome for _, outcome in finished], [])
    return [outcome for _, outcome in finished]

  wanted, first, most = config.study.num_cases, config.study.first_seed, config.study.max_seeds
  seeds: list[int] = []
  while (missing := wanted - sum(r["case"] is not None for r in records)) > 0 and len(seeds) < most:
    # As many new seeds as cases are still missing: a seed gives at most one case, so the
    # study never records more than it asked for, and a resume retraces the same rounds.
    seeds += range(first + len(seeds), first + min(most, len(seeds) + missing))
    records = runner.run_cells(
      work_dir,
      [{"name": f"record-seed{seed:03d}", "seed": seed} for seed in seeds],
      [record_config(config, seed) for seed in seeds],
      lambda cell, run_config, cell_dir: record(run_config, cell_dir, work_dir),
      write_records,
      "Recovery, stage 1 (recording)",
      study_config=config,
      resumable=RESUMABLE_CHANGES,
      outcome_keys=RECORD_KEYS,
    )
  found = [r for r in records if r["case"] is not None]
  if len(found) < wanted:
    logging.warning("Only %d of %d seeds gave a case; branching those.", len(found), len(seeds))

  def branch(cell, _, cell_dir):
    return branch_case(config, work_dir, cell["record"]["case"], cell_dir, trainers)

  return runner.run_cells(
    work_dir,
    [{"name": f"case-seed{r['seed']:03d}", "record": r} for r in found],
    [None] * len(found),
    branch,
    lambda finished: write(records, [outcome for _, outcome in finished]),
    "Recovery, stage 2 (branching)",
    study_config=config,
    resumable=RESUMABLE_CHANGES,
    outcome_keys=CASE_KEYS,
  )
