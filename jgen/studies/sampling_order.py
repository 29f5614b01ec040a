"""The sampling-order study: does the order of data (and the optimizer) decide collapse?

configs/study_sampling_order.py. Each cell (data x discriminator x optimizer x sampler) trains
`study.population` seeds in one program under W/cells/NAME/ and ends with
W/cells/NAME/outcome.json. A cell with an outcome is never rerun; an interrupted cell resumes
from its checkpoint (it is an ordinary run). After every cell, W/report.json, W/report.md and
the plots are rewritten from the cells finished so far.

A member *collapsed* if its final evaluation misses at least one mode (PacGAN's notion of mode
collapse). Its time to collapse is the first evaluation at which the run's collapse detectors
(jgen/collapse/detectors.py, at their config values) fire.
"""

import itertools
import math
import os

import ml_collections

from jgen.collapse import detectors as collapse
from jgen.core import config as config_lib
from jgen.core import jsonl
from jgen.studies import runner, stats
from jgen.trainers import gan as gan_trainer
from jgen.viz.plots import new_figure, save_figure

SAMPLERS = {
  "epoch_shuffle": {"sampler.kind": "epoch_shuffle"},
  "shuffle_once": {"sampler.kind": "shuffle_once"},
  "with_replacement": {"sampler.kind": "with_replacement"},
  "streak2": {"sampler.kind": "streak", "sampler.streak_length": 2},
  "streak8": {"sampler.kind": "streak", "sampler.streak_length": 8},
  "full_batch": {"sampler.kind": "full_batch"},
}
OPTIMIZERS = {
  "adam": {"optimizer.name": "adam", "optimizer.learning_rate": 1e-4, "optimizer.b1": 0.8},
  "momentum": {"optimizer.name": "momentum", "optimizer.learning_rate": 1e-3},
  "sgd": {"optimizer.name": "sgd", "optimizer.learning_rate": 1e-2},
}
DISCRIMINATORS = {
  "per_sample": {"model.discriminator.name": "mlp", "model.set_size": 1},
  "set": {"model.discriminator.name": "deepsets", "model.set_size": 4},
}
FACTORS = ("data", "discriminator", "optimizer", "sampler")
REPORT_FILE = "report.md"
# Study keys that may change on a rerun (jgen/studies/runner.py): they choose which cells the
# grid holds; no cell's config depends on them.
RESUMABLE_CHANGES = ("study.data", "study.discriminators", "study.optimizers", "study.samplers")
OUTCOME_KEYS = ("outcomes",)  # what the report reads of a cell's outcome.json


def _names(text: str, table: dict | None, what: str) -> list[str]:
  names = [name for name in text.split(",") if name]
  unknown = [name for name in names if table is not None and name not in table]
  if unknown or not names:
    valid = ", ".join(table) if table else "any"
    raise ValueError(f"study.{what}: unknown or empty {unknown or names}; valid: {valid}")
  return names


def cells(config: ml_collections.ConfigDict) -> list[dict]:
  """Every cell of the grid: {name, data, discriminator, optimizer, sampler}."""
  grid = itertools.product(
    _names(config.study.data, None, "data"),
    _names(config.study.discriminators, DISCRIMINATORS, "discriminators"),
    _names(config.study.optimizers, OPTIMIZERS, "optimizers"),
    _names(config.study.samplers, SAMPLERS, "samplers"),
  )
  return [{"name": "-".join(values), **dict(zip(FACTORS, values, strict=True))} for values in grid]


def cell_config(config: ml_collections.ConfigDict, cell: dict) -> ml_collections.ConfigDict:
  run = ml_collections.ConfigDict(config.base.to_dict())
  overrides = {
    "data.name": cell["data"],
    "population.size": config.study.population,
    **DISCRIMINATORS[cell["discriminator"]],
    **OPTIMIZERS[cell["optimizer"]],
    **SAMPLERS[cell["sampler"]],
  }
  for path, value in overrides.items():
    config_lib.apply_override(run, f"{path}={value}")
  run.lock()
  return run


def member_outcomes(rows: list[dict], detector_config) -> list[dict]:
  """Per member: final metrics, collapsed (a mode missing at the end), time to collapse."""
  evaluations = [row for row in rows if "modes" in row]
  members = len(evaluations[-1]["modes"])
  outcomes = []
  for member in range(members):
    detector, fired_at = collapse.Detector(detector_config), None
    for row in evaluations:
      mine = {k: (v[member] if isinstance(v, list) else v) for k, v in row.items()}
      if detector.observe(mine) and fired_at is None:
        fired_at = row["step"]
    final = {k: (v[member] if isinstance(v, list) else v) for k, v in evaluations[-1].items()}
    outcomes.append(
      {
        "seed_offset": member,
        "modes": final["modes"],
        "num_modes": len(final["mode_counts"]),
        "high_quality": final["high_quality"],
        "reverse_kl": final["reverse_kl"],
        "collapsed": final["modes"] < len(final["mode_counts"]),
        "time_to_collapse": fired_at,
        "modes_over_time": [[row["step"], row["modes"][member]] for row in evaluations],
      }
    )
  return outcomes


def cell_summary(cell: dict, outcomes: list[dict]) -> dict:
  collapsed = [o["collapsed"] for o in outcomes]
  summary = {**cell, "members": len(outcomes), "collapsed": sum(collapsed)}
  summary["collapse_rate"] = sum(collapsed) / len(outcomes)
  summary["collapse_rate_wilson_95"] = list(stats.wilson_interval(sum(collapsed), len(outcomes)))
  for key in ("modes", "high_quality", "reverse_kl"):
    mean, error = stats.mean_and_standard_error([o[key] for o in outcomes])
    summary[key] = {"mean": mean, "standard_error": error}
  summary["time_to_collapse"] = stats.time_to_collapse_summary(
    [o["time_to_collapse"] for o in outcomes]
  )
  return summary


def build_report(finished: list[tuple[dict, list[dict]]]) -> dict:
  """Cells and, per (data, discriminator, optimizer) block, a test across samplers."""
  summaries = [cell_summary(cell, outcomes) for cell, outcomes in finished]
  blocks = {}
  for (cell, outcomes), summary in zip(finished, summaries, strict=True):
    key = (cell["data"], cell["discriminator"], cell["optimizer"])
    blocks.setdefault(key, {"cells": [], "groups": {}})
    blocks[key]["cells"].append(summary)
    blocks[key]["groups"][cell["sampler"]] = [o["collapsed"] for o in outcomes]
  report_blocks = []
  for (data, discriminator, optimizer), block in blocks.items():
    comparison = stats.compare_groups(block["groups"]) if len(block["groups"]) > 1 else None
    report_blocks.append(
      {
        "data": data,
        "discriminator": discriminator,
        "optimizer": optimizer,
        "samplers_compared": comparison,
        "cells": block["cells"],
      }
    )
  return _finite_or_none({"blocks": report_blocks})


def _finite_or_none(value):
  """NaN/inf (a standard error of one member, say) as None, so report.json is valid JSON."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _finite_or_none(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_finite_or_none(v) for v in value]
  return value


def _fmt(value, digits=3) -> str:
  return "n/a" if value is None else f"{value:.{digits}f}"


def report_markdown(report: dict, config) -> str:
  lines = [
    "# Sampling-order study",
    "",
    f"{config.study.population} seeds per cell; {config.base.train.num_steps} steps. A member "
    "collapsed if its final evaluation misses a mode. Intervals: 95% Wilson for rates, "
    "± one standard error for means. Small populations give wide intervals: read them.",
    "",
  ]
  for block in report["blocks"]:
    title = f"{block['data']}, {block['discriminator']} D, {block['optimizer']}"
    lines += [f"## {title}", ""]
    lines += [
      "| sampler | collapsed | rate [95% CI] | modes | high quality | reverse KL | "
      "time to collapse (median) |",
      "|---|---|---|---|---|---|---|",
    ]
    for cell in block["cells"]:
      low, high = cell["collapse_rate_wilson_95"]
      ttc = cell["time_to_collapse"]["median"]
      lines.append(
        f"| {cell['sampler']} | {cell['collapsed']}/{cell['members']} | "
        f"{cell['collapse_rate']:.2f} [{low:.2f}, {high:.2f}] | "
        f"{_fmt(cell['modes']['mean'], 2)} ± {_fmt(cell['modes']['standard_error'], 2)} | "
        f"{_fmt(cell['high_quality']['mean'])} | {_fmt(cell['reverse_kl']['mean'])} | "
        f"{'none' if ttc is None else int(ttc)} |"
      )
    test = block["samplers_compared"]
    if test:
      line = f"{test['method']} across samplers: p = {_fmt(test['p_value'], 4)}"
      if test.get("chi_square_p_value") is not None:
        line += (
          f" (Pearson chi-square {test['statistic']:.2f}, {test['dof']} dof, "
          f"p = {_fmt(test['chi_square_p_value'], 4)})"
        )
      lines += ["", line + "."]
    lines.append("")
  return "\n".join(lines)


def plot_report(path_prefix: str, report: dict, finished) -> None:
  """collapse_rate.png (Wilson error bars) and modes_over_time.png, one panel per block."""
  blocks = report["blocks"]
  columns = min(3, len(blocks))  # the optimizers of one (data, D) pair share a row
  rows = math.ceil(len(blocks) / columns)
  figure = new_figure(3.6 * columns, 2.8 * rows)
  for i, block in enumerate(blocks):
    axes = figure.add_subplot(rows, columns, i + 1)
    names = [cell["sampler"] for cell in block["cells"]]
    rates = [cell["collapse_rate"] for cell in block["cells"]]
    errors = [
      [r - c["collapse_rate_wilson_95"][0] for r, c in zip(rates, block["cells"], strict=True)],
      [c["collapse_rate_wilson_95"][1] - r for r, c in zip(rates, block["cells"], strict=True)],
    ]
    axes.bar(range(len(names)), rates, yerr=errors, capsize=3, color="C0")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    axes.set_ylim(0, 1)
    axes.set_title(f"{block['data']}/{block['discriminator']}/{block['optimizer']}", fontsize=8)
    axes.set_ylabel("collapse rate", fontsize=8)
  save_figure(figure, f"{path_prefix}collapse_rate.png")
  figure = new_figure(3.6 * columns, 2.8 * rows)
  by_block = {}
  for cell, outcomes in finished:
    by_block.setdefault((cell["data"], cell["discriminator"], cell["optimizer"]), []).append(
      (cell["sampler"], outcomes)
    )
  for i, (key, entries) in enumerate(by_block.items()):
    axes = figure.add_subplot(rows, columns, i + 1)
    for color, (sampler, outcomes) in enumerate(entries):
      steps = [step for step, _ in outcomes[0]["modes_over_time"]]
      mean = [
        sum(o["modes_over_time"][t][1] for o in outcomes) / len(outcomes) for t in range(len(steps))
      ]
      axes.plot(steps, mean, color=f"C{color}", label=sampler, linewidth=1.2)
    axes.set_title("/".join(key), fontsize=8)
    axes.set_xlabel("step", fontsize=8)
    axes.set_ylabel("modes (member mean)", fontsize=8)
    axes.legend(fontsize=6)
  save_figure(figure, f"{path_prefix}modes_over_time.png")


def run_study(config: ml_collections.ConfigDict, work_dir: str) -> dict:
  """Trains every unfinished cell, rewriting the report after each; returns the report."""
  grid = cells(config)
  configs = [cell_config(config, cell) for cell in grid]  # every cell validated up front
  for run_config in configs:
    gan_trainer.Gan.from_config(run_config)

  def train_cell(cell, run_config, cell_dir):
    gan_trainer.train_and_evaluate(run_config, cell_dir)
    rows = jsonl.read_rows(os.path.join(cell_dir, "metrics.jsonl"))
    return {"cell": cell, "outcomes": member_outcomes(rows, run_config.collapse)}

  def write_report(finished):
    finished = [(cell, saved["outcomes"]) for cell, saved in finished]
    report = build_report(finished)
    runner.write_json(os.path.join(work_dir, "report.json"), report, indent=1, allow_nan=False)
    runner.write_text(os.path.join(work_dir, REPORT_FILE), report_markdown(report, config))
    plot_report(os.path.join(work_dir, ""), report, finished)
    return report

  return runner.run_cells(
    work_dir,
    grid,
    configs,
    train_cell,
    write_report,
    "Study",
    study_config=config,
    resumable=RESUMABLE_CHANGES,
    outcome_keys=OUTCOME_KEYS,
  )
