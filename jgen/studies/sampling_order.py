"""The sampling-order study: does the order of data (and the optimizer) decide collapse?

configs/study_sampling_order.py. Each cell (data x discriminator x optimizer x sampler: what
each name sets in the base config is the config's `study.settings`) trains
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

from jgen.core import jsonl
from jgen.studies import runner, stats
from jgen.viz.plots import new_figure, save_figure

FACTORS = ("data", "discriminator", "optimizer", "sampler")
REPORT_FILE = "report.md"
# Study keys that may change on a rerun (jgen/studies/runner.py): they choose which cells the
# grid holds; no cell's config depends on them.
RESUMABLE_CHANGES = ("study.data", "study.discriminators", "study.optimizers", "study.samplers")
OUTCOME_KEYS = ("outcomes",)  # what the report reads of a cell's outcome.json


def cells(config: ml_collections.ConfigDict) -> list[dict]:
  """Every cell of the grid: {name, data, discriminator, optimizer, sampler}."""
  settings = config.study.settings
  grid = itertools.product(
    runner.axis(config, "study.data"),
    runner.axis(config, "study.discriminators", settings.discriminators),
    runner.axis(config, "study.optimizers", settings.optimizers),
    runner.axis(config, "study.samplers", settings.samplers),
  )
  return [{"name": "-".join(values), **dict(zip(FACTORS, values, strict=True))} for values in grid]


def cell_config(config: ml_collections.ConfigDict, cell: dict) -> ml_collections.ConfigDict:
  settings = config.study.settings
  return runner.cell_config(
    config.base,
    {"data.name": cell["data"], "population.size": config.study.population},
    settings.discriminators[cell["discriminator"]],
    settings.optimizers[cell["optimizer"]],
    settings.samplers[cell["sampler"]],
  )


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
  return stats.finite_or_none({"blocks": report_blocks})


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
  configs = [cell_config(config, cell) for cell in grid]

  def train_cell(cell, run_config, cell_dir):
    runner.train(run_config, cell_dir)
    rows = jsonl.read_rows(os.path.join(cell_dir, "metrics.jsonl"))
    return {"cell": cell, "outcomes": stats.member_outcomes(rows, run_config.collapse)}

  def write_report(finished):
    finished = [(cell, saved["outcomes"]) for cell, saved in finished]
    report = build_report(finished)
    runner.save_report(work_dir, report, report_markdown(report, config), REPORT_FILE)
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
