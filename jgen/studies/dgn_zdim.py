r"""How small can z be? A sweep of DGN runs over N x z_dim x G width (configs/dgn_zdim.py).

  python -m jgen.study --config=configs/dgn_zdim.py --workdir=runs/zdim
  python -m jgen.study --config=configs/dgn_zdim.py:runlocal --workdir=runs/zdim_local

Each cell is an ordinary DGN run under W/cells/n{N}-z{Z}-w{W}/ that ends with outcome.json
(a finished cell is never rerun; an interrupted one resumes). Training length scales with N:
max(study.min_steps, study.epochs * N / batch) steps, so every N sees each image as often.
A cell *restores* its N images if every one reaches eval.exact_psnr (40 dB). The report
(W/report.md, report.json, zdim.png) gives, for each N and width, the smallest z_dim that
restores all N, and for each N the smallest (z_dim, width) pair: the smallest z first, then
the narrowest G at that z.
"""

import itertools
import math
import os
import time

import ml_collections

from jgen.studies import runner
from jgen.viz.plots import new_figure, save_figure

REPORT_FILE = "report.md"
# Study keys that may change on a rerun (jgen/studies/runner.py): they choose which cells the
# grid holds; no cell's config depends on them.
RESUMABLE_CHANGES = ("study.num_train", "study.z_dims", "study.widths")
# What the report reads of a cell's outcome.json.
OUTCOME_KEYS = ("exact_fraction", "recon_psnr_mean", "recon_psnr_min", "steps")


def cells(config) -> list[dict]:
  axes = ("study.num_train", "study.z_dims", "study.widths")
  grid = itertools.product(*(sorted(runner.axis(config, key, number=int)) for key in axes))
  return [{"name": f"n{n}-z{z}-w{w}", "n": n, "z_dim": z, "width": w} for n, z, w in grid]


def cell_config(config, cell: dict) -> ml_collections.ConfigDict:
  base = config.base
  batch = min(base.train.batch_size, cell["n"])
  steps = max(config.study.min_steps, math.ceil(config.study.epochs * cell["n"] / batch))
  steps = math.ceil(steps / base.train.eval_every) * base.train.eval_every
  return runner.cell_config(
    base,
    {
      "data.num_train": cell["n"],
      "model.z_dim": cell["z_dim"],
      "model.width": cell["width"],
      "train.batch_size": batch,
      "train.num_steps": steps,
      "eval.final_extras": False,
    },
  )


def report(config, finished: list[tuple[dict, dict]]) -> dict:
  rows = [{**cell, **outcome} for cell, outcome in finished]
  smallest = []
  for n in sorted({row["n"] for row in rows}):
    mine = [row for row in rows if row["n"] == n]
    per_width = {}
    for width in sorted({row["width"] for row in mine}):
      restored = [r["z_dim"] for r in mine if r["width"] == width and r["exact_fraction"] == 1.0]
      per_width[width] = min(restored) if restored else None
    restored = [r for r in mine if r["exact_fraction"] == 1.0]
    best = min(restored, key=lambda r: (r["z_dim"], r["width"])) if restored else None
    smallest.append(
      {
        "n": n,
        "smallest_z_per_width": per_width,
        "smallest_z_dim": best and best["z_dim"],
        "width_at_smallest_z": best and best["width"],
      }
    )
  return {"exact_psnr": config.base.eval.exact_psnr, "cells": rows, "smallest": smallest}


def report_markdown(result: dict) -> str:
  lines = [
    "# How small can z be? (DGN on sklearn digits)",
    "",
    f"A cell restores its N images if every one reaches {result['exact_psnr']:.0f} dB PSNR.",
    "",
    "| N | smallest z_dim (width at it) | smallest z_dim per G width |",
    "|---|---|---|",
  ]
  for row in result["smallest"]:
    per_width = ", ".join(
      f"w{w}: {'none' if z is None else z}" for w, z in row["smallest_z_per_width"].items()
    )
    best = (
      "none in the grid"
      if row["smallest_z_dim"] is None
      else f"{row['smallest_z_dim']} (width {row['width_at_smallest_z']})"
    )
    lines.append(f"| {row['n']} | {best} | {per_width} |")
  lines += [
    "",
    "| N | z_dim | width | steps | exact fraction | PSNR mean | PSNR min |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in result["cells"]:
    lines.append(
      f"| {r['n']} | {r['z_dim']} | {r['width']} | {r['steps']} | {r['exact_fraction']:.3f} | "
      f"{r['recon_psnr_mean']:.1f} | {r['recon_psnr_min']:.1f} |"
    )
  return "\n".join(lines) + "\n"


def plot(path: str, result: dict) -> None:
  ns = sorted({r["n"] for r in result["cells"]})
  figure = new_figure(3.4 * len(ns), 2.8)
  for i, n in enumerate(ns):
    axes = figure.add_subplot(1, len(ns), i + 1)
    mine = [r for r in result["cells"] if r["n"] == n]
    for color, width in enumerate(sorted({r["width"] for r in mine})):
      points = sorted((r["z_dim"], r["exact_fraction"]) for r in mine if r["width"] == width)
      axes.plot(*zip(*points, strict=True), marker="o", color=f"C{color}", label=f"width {width}")
    axes.set_xscale("log", base=2)
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"N = {n}", fontsize=9)
    axes.set_xlabel("z_dim", fontsize=8)
    axes.set_ylabel("fraction reconstructed exactly", fontsize=8)
    axes.legend(fontsize=6)
  save_figure(figure, path)


def run_study(config, work_dir: str) -> dict:
  """Trains every unfinished cell, rewriting the report after each; returns the report."""
  grid = cells(config)
  configs = [cell_config(config, cell) for cell in grid]

  def train_cell(cell, run_config, cell_dir):
    started = time.perf_counter()
    final = runner.train(run_config, cell_dir)
    keys = ("exact_fraction", "recon_psnr_mean", "recon_psnr_min", "sharpness_ratio")
    outcome = {key: final[key] for key in keys}
    outcome["steps"] = run_config.train.num_steps
    outcome["seconds"] = time.perf_counter() - started
    return outcome

  def write_report(finished):
    result = report(config, finished)
    runner.write_json(os.path.join(work_dir, "report.json"), result, indent=1)
    runner.write_text(os.path.join(work_dir, REPORT_FILE), report_markdown(result))
    plot(os.path.join(work_dir, "zdim.png"), result)
    return result

  return runner.run_cells(
    work_dir,
    grid,
    configs,
    train_cell,
    write_report,
    "zdim study",
    study_config=config,
    resumable=RESUMABLE_CHANGES,
    outcome_keys=OUTCOME_KEYS,
  )
