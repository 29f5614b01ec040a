r"""PacGAN's Table 1: modes, high-quality fraction and reverse KL per (data, m), beside the paper.

configs/study_pacgan_table1.py. Each cell (data x pack size m) is configs/pacgan.py with
`study.seeds` seeds trained as one population under W/cells/NAME/, ending with
W/cells/NAME/outcome.json (jgen/studies/runner.py: finished cells are never rerun; an
interrupted one resumes from its checkpoint). After every cell W/report.json and W/report.md
are rewritten from the cells finished so far.

Each number is a mean ± standard error over seeds of the final evaluation (PacGAN's
convention: 2,500 samples, high-quality fraction in percent). A cell is marked when jgen and
the paper differ by more than 2 combined standard errors, sqrt(se_jgen^2 + se_paper^2), in any
of the three measures; the marks say "different at this length and seed count", no more.
"""

import math
import os
import time

import ml_collections

from jgen.core import jsonl
from jgen.studies import runner, stats

REPORT_FILE = "report.md"
# Study keys that may change on a rerun (jgen/studies/runner.py): the grid's data and pack
# sizes choose its cells, and the published values are only compared in the report.
RESUMABLE_CHANGES = ("study.data", "study.pack_sizes", "study.published", "study.published_source")
OUTCOME_KEYS = ("outcomes", "steps")  # what the report reads of a cell's outcome.json
MEASURES = ("modes", "high_quality", "reverse_kl")
# jgen reports high_quality as a fraction; the paper in percent.
SCALE = {"modes": 1.0, "high_quality": 100.0, "reverse_kl": 1.0}
MARK_AT = 2.0  # combined standard errors


def cells(config: ml_collections.ConfigDict) -> list[dict]:
  """Every cell: {name, data, m}, data-major as in the paper's table."""
  return [
    {"name": f"{data}-m{m}", "data": data, "m": m}
    for data in runner.axis(config, "study.data")
    for m in runner.axis(config, "study.pack_sizes", number=int)
  ]


def cell_config(config: ml_collections.ConfigDict, cell: dict) -> ml_collections.ConfigDict:
  return runner.cell_config(
    config.base,
    {"data.name": cell["data"], "model.set_size": cell["m"], "population.size": config.study.seeds},
  )


def published_values(config, data: str, m: int) -> dict | None:
  """{measure: (mean, standard error)} from the paper for this cell, or None if it has none."""
  table = config.study.published
  if data not in table or f"m{m}" not in table[data]:
    return None
  return {key: tuple(table[data][f"m{m}"][key]) for key in MEASURES}


def cell_summary(cell: dict, saved: dict, published: dict | None) -> dict:
  outcomes = saved["outcomes"]
  summary = {**cell, "seeds": len(outcomes), "steps": saved["steps"]}
  summary["wall_seconds"] = saved.get("wall_seconds")
  summary["undefined_reverse_kl"] = sum(o["reverse_kl"] is None for o in outcomes)
  far = []
  for key in MEASURES:
    mean, error = stats.mean_and_standard_error(
      [None if o[key] is None else o[key] * SCALE[key] for o in outcomes]
    )
    entry = {"mean": mean, "standard_error": error}
    if published is not None:
      paper_mean, paper_error = published[key]
      entry["paper"] = {"mean": paper_mean, "standard_error": paper_error}
      combined = math.sqrt((error if math.isfinite(error) else 0.0) ** 2 + paper_error**2)
      entry["combined_errors_apart"] = abs(mean - paper_mean) / combined
      if entry["combined_errors_apart"] > MARK_AT:
        far.append(key)
    summary[key] = entry
  summary["differs_from_paper"] = far if published is not None else None
  return summary


def build_report(finished: list[tuple[dict, dict]], config) -> dict:
  summaries = [
    cell_summary(cell, saved, published_values(config, cell["data"], cell["m"]))
    for cell, saved in finished
  ]
  return stats.finite_or_none(
    {
      "published_source": config.study.published_source,
      "mark_at_combined_standard_errors": MARK_AT,
      "cells": summaries,
    }
  )


def _pm(entry: dict | None, digits: int) -> str:
  if entry is None or entry["mean"] is None:
    return "n/a"
  error = entry["standard_error"]
  return f"{entry['mean']:.{digits}f} ± {'n/a' if error is None else f'{error:.{digits}f}'}"


def report_markdown(report: dict, config) -> str:
  lines = [
    "# PacGAN Table 1: jgen beside the paper",
    "",
    "Mean ± standard error over seeds of the final evaluation "
    f"({config.base.eval.num_samples:,} samples); high quality "
    "in percent. Paper: " + report["published_source"] + ", 10 trials of 400,000 steps. "
    f"**bold**: more than {MARK_AT:g} combined standard errors from the paper. Read each row "
    "with its length and seed count.",
    "",
    "| data | m | steps | seeds | modes | paper | high quality % | paper | reverse KL | paper |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for cell in report["cells"]:
    far = cell["differs_from_paper"] or []
    row = [cell["data"], str(cell["m"]), f"{cell['steps']:,}", str(cell["seeds"])]
    for key, digits in (("modes", 1), ("high_quality", 1), ("reverse_kl", 2)):
      ours = _pm(cell[key], digits)
      row += [f"**{ours}**" if key in far else ours, _pm(cell[key].get("paper"), digits)]
    lines.append("| " + " | ".join(row) + " |")
  undefined = [c for c in report["cells"] if c["undefined_reverse_kl"]]
  if undefined:
    lines += [
      "",
      "Reverse KL is undefined for a seed with no high-quality sample; left out of the mean: "
      + ", ".join(f"{c['name']} ({c['undefined_reverse_kl']})" for c in undefined)
      + ".",
    ]
  timed = [c for c in report["cells"] if c.get("wall_seconds")]
  if timed:
    lines += ["", "Wall time per cell (all its seeds together, compile included):", ""]
    lines += [
      f"- {c['name']}: {c['wall_seconds']:.0f} s for {c['steps']:,} steps x {c['seeds']} seeds"
      for c in timed
    ]
  return "\n".join(lines) + "\n"


def run_study(config: ml_collections.ConfigDict, work_dir: str) -> dict:
  """Trains every unfinished cell, rewriting the report after each; returns the report."""
  grid = cells(config)
  configs = [cell_config(config, cell) for cell in grid]

  def train_cell(cell, run_config, cell_dir):
    started = time.perf_counter()
    runner.train(run_config, cell_dir)
    rows = jsonl.read_rows(os.path.join(cell_dir, "metrics.jsonl"))
    return {
      "cell": cell,
      "steps": run_config.train.num_steps,
      "wall_seconds": time.perf_counter() - started,
      "outcomes": stats.member_outcomes(rows),
    }

  def write_report(finished):
    report = build_report(finished, config)
    runner.save_report(work_dir, report, report_markdown(report, config), REPORT_FILE)
    return report

  return runner.run_cells(
    work_dir,
    grid,
    configs,
    train_cell,
    write_report,
    "Table 1",
    study_config=config,
    resumable=RESUMABLE_CHANGES,
    outcome_keys=OUTCOME_KEYS,
  )
