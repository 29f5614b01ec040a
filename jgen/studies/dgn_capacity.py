r"""How big must G be, and how small can z be, to restore N images? A DGN capacity curve over
N x z_dim x architecture x width (x loss x training length) (configs/dgn_capacity.py).

  python -m jgen.study --config=configs/dgn_capacity.py --workdir=runs/dgn_capacity
  python -m jgen.study --config=configs/dgn_capacity.py:losses --workdir=runs/dgn_losses
  python -m jgen.study --config=configs/dgn_capacity.py:runlocal --workdir=runs/capacity_local

Each cell is an ordinary DGN run under W/cells/<name>/ ending with outcome.json (a finished cell
is never rerun; an interrupted one resumes). Training length grows linearly with N: every cell
visits each image `epochs` times, max(study.min_steps, epochs * N / batch) steps, so the cost of
restoring N images at a fixed G is proportional to N. A cell *restores* its N images when every
one reaches eval.exact_psnr (40 dB). The report (W/report.md, report.json, capacity.png) gives,
per N, architecture, loss and length: the smallest z_dim that restores all N (and the smallest G
there), and the fewest G parameters that restore all N at any z; per N, the architecture that
does it with the fewest parameters; and, where a cell was trained at two lengths, both results,
so the reader can see whether the curve had flattened.
"""

import itertools
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jgen.core import jsonl
from jgen.models import dgn as dgn_models
from jgen.studies import runner
from jgen.viz.plots import new_figure, save_figure

REPORT_FILE = "report.md"
# Study keys that choose which cells the grid holds; no cell's config depends on them.
RESUMABLE_CHANGES = (
  "study.num_train",
  "study.z_dims",
  "study.widths",
  "study.architectures",
  "study.losses",
  "study.epochs",
)
OUTCOME_KEYS = ("exact_fraction", "recon_psnr_mean", "recon_psnr_min", "steps", "g_params")
LOSSES = ("mse", "l1", "gaussian_nll", "perceptual")
IMAGE_SHAPE = (8, 8, 1)  # sklearn's digits


def cells(config) -> list[dict]:
  numbers = [
    sorted(runner.axis(config, key, number=int))
    for key in ("study.num_train", "study.z_dims", "study.epochs")
  ]
  architectures = runner.axis(config, "study.architectures", dgn_models.ARCHITECTURES)
  losses = runner.axis(config, "study.losses", LOSSES)
  widths = {arch: sorted(runner.axis(config, f"study.widths.{arch}", number=int)) for arch in
            architectures}  # fmt: skip
  grid = []
  for (n, z, epochs), arch, loss in itertools.product(
    itertools.product(*numbers), architectures, losses
  ):
    for width in widths[arch]:
      name = f"n{n}-z{z}-{arch}{width}-{loss}-e{epochs}"
      grid.append(
        {
          "name": name,
          "n": n,
          "z_dim": z,
          "architecture": arch,
          "width": width,
          "loss": loss,
          "epochs": epochs,
        }
      )
  return grid


def cell_config(config, cell: dict) -> ml_collections.ConfigDict:
  base = config.base
  batch = min(base.train.batch_size, cell["n"])
  steps = max(config.study.min_steps, math.ceil(cell["epochs"] * cell["n"] / batch))
  steps = math.ceil(steps / base.train.eval_every) * base.train.eval_every
  return runner.cell_config(
    base,
    {
      "data.num_train": cell["n"],
      "model.z_dim": cell["z_dim"],
      "model.architecture": cell["architecture"],
      "model.width": cell["width"],
      "loss.name": cell["loss"],
      "train.batch_size": batch,
      "train.num_steps": steps,
      "eval.final_extras": False,
    },
  )


def g_parameters(run_config) -> int:
  """The number of G's parameters (the code table's N x z_dim numbers are not counted)."""
  generator = dgn_models.make_generator(run_config.model, IMAGE_SHAPE)
  shapes = jax.eval_shape(
    generator.init, jax.random.key(0), jnp.zeros((1, run_config.model.z_dim), jnp.float32)
  )
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(shapes)))


def _restoring(rows: list[dict]) -> list[dict]:
  return [row for row in rows if row["exact_fraction"] == 1.0]


def report(config, finished: list[tuple[dict, dict]]) -> dict:
  rows = [{**cell, **outcome} for cell, outcome in finished]
  groups = {}
  for row in rows:
    groups.setdefault((row["n"], row["architecture"], row["loss"], row["epochs"]), []).append(row)
  smallest = []
  for (n, arch, loss, epochs), mine in sorted(groups.items()):
    restored = _restoring(mine)
    by_z = min(restored, key=lambda r: (r["z_dim"], r["g_params"])) if restored else None
    by_params = min(restored, key=lambda r: (r["g_params"], r["z_dim"])) if restored else None
    smallest.append(
      {
        "n": n,
        "architecture": arch,
        "loss": loss,
        "epochs": epochs,
        "smallest_z_dim": by_z and by_z["z_dim"],
        "g_params_at_smallest_z": by_z and by_z["g_params"],
        "fewest_g_params": by_params and by_params["g_params"],
        "z_dim_at_fewest_params": by_params and by_params["z_dim"],
        "best_exact_fraction": max(r["exact_fraction"] for r in mine),
      }
    )
  best_architecture = {}
  for n in sorted({row["n"] for row in rows}):
    candidates = [s for s in smallest if s["n"] == n and s["fewest_g_params"] is not None]
    top = min(candidates, key=lambda s: s["fewest_g_params"]) if candidates else None
    best_architecture[str(n)] = top and {k: top[k] for k in ("architecture", "fewest_g_params")}
  lengths = {}
  for row in rows:
    key = tuple(row[k] for k in ("n", "z_dim", "architecture", "width", "loss"))
    lengths.setdefault(key, []).append(row)
  longer = [
    {**dict(zip(("n", "z_dim", "architecture", "width", "loss"), key, strict=True)),
     "by_epochs": {str(r["epochs"]): {k: r[k] for k in ("exact_fraction", "recon_psnr_min",
                                                        "recon_psnr_mean")} for r in mine}}
    for key, mine in sorted(lengths.items()) if len(mine) > 1
  ]  # fmt: skip
  return {
    "exact_psnr": config.base.eval.exact_psnr,
    "cells": rows,
    "smallest": smallest,
    "best_architecture": best_architecture,
    "lengths": longer,
  }


def report_markdown(result: dict) -> str:
  lines = [
    "# How big a G and how small a z restore N digits? (DGN on sklearn digits)",
    "",
    f"A cell restores its N images if every one reaches {result['exact_psnr']:.0f} dB PSNR. "
    "G parameters exclude the N x z_dim code table.",
    "",
    "| N | architecture | loss | epochs | smallest z (G params there) | fewest G params (z) | "
    "best exact fraction |",
    "|---|---|---|---|---|---|---|",
  ]
  for s in result["smallest"]:
    by_z = (
      "none in the grid"
      if s["smallest_z_dim"] is None
      else f"{s['smallest_z_dim']} ({s['g_params_at_smallest_z']:,})"
    )
    by_p = (
      "none" if s["fewest_g_params"] is None
      else f"{s['fewest_g_params']:,} ({s['z_dim_at_fewest_params']})"
    )  # fmt: skip
    lines.append(
      f"| {s['n']} | {s['architecture']} | {s['loss']} | {s['epochs']} | {by_z} | {by_p} | "
      f"{s['best_exact_fraction']:.3f} |"
    )
  lines += ["", "Fewest G parameters restoring all N, per N:", ""]
  for n, best in result["best_architecture"].items():
    text = "no cell restores all" if best is None else (
      f"{best['architecture']} with {best['fewest_g_params']:,} parameters"
    )  # fmt: skip
    lines.append(f"- N = {n}: {text}")
  if result["lengths"]:
    lines += [
      "",
      "| N | z | G | loss | exact fraction / PSNR min by epochs |",
      "|---|---|---|---|---|",
    ]
    for r in result["lengths"]:
      parts = ", ".join(
        f"{e}: {v['exact_fraction']:.3f} / {v['recon_psnr_min']:.1f} dB"
        for e, v in r["by_epochs"].items()
      )
      lines.append(
        f"| {r['n']} | {r['z_dim']} | {r['architecture']}{r['width']} | {r['loss']} | {parts} |"
      )
  lines += [
    "",
    "| N | z_dim | G | params | loss | epochs | steps | exact fraction | PSNR mean | PSNR min "
    "| sharpness | seconds |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in result["cells"]:
    sharpness = r.get("sharpness_ratio", math.nan)
    lines.append(
      f"| {r['n']} | {r['z_dim']} | {r['architecture']}{r['width']} | {r['g_params']:,} | "
      f"{r['loss']} | {r['epochs']} | {r['steps']} | {r['exact_fraction']:.3f} | "
      f"{r['recon_psnr_mean']:.1f} | {r['recon_psnr_min']:.1f} | {sharpness:.3f} | "
      f"{r.get('seconds', 0):.0f} |"
    )
  return "\n".join(lines) + "\n"


def plot(path: str, result: dict) -> None:
  """Per N: exact fraction against G's parameters, one line per (architecture, z_dim)."""
  ns = sorted({r["n"] for r in result["cells"]})
  figure = new_figure(3.4 * len(ns), 2.8)
  for i, n in enumerate(ns):
    axes = figure.add_subplot(1, len(ns), i + 1)
    mine = [r for r in result["cells"] if r["n"] == n and r["epochs"] == min(
      c["epochs"] for c in result["cells"])]  # fmt: skip
    lines = sorted({(r["architecture"], r["z_dim"], r["loss"]) for r in mine})
    for color, (arch, z, loss) in enumerate(lines):
      points = sorted(
        (r["g_params"], r["exact_fraction"])
        for r in mine if (r["architecture"], r["z_dim"], r["loss"]) == (arch, z, loss)
      )  # fmt: skip
      style = "-" if arch == "conv" else "--"
      axes.plot(*zip(*points, strict=True), style, marker="o", markersize=3, color=f"C{color}",
                label=f"{arch} z{z} {loss}")  # fmt: skip
    axes.set_xscale("log")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"N = {n}", fontsize=9)
    axes.set_xlabel("G parameters", fontsize=8)
    axes.set_ylabel("fraction reconstructed exactly", fontsize=8)
    axes.legend(fontsize=5)
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
    outcome["g_params"] = g_parameters(run_config)
    outcome["seconds"] = time.perf_counter() - started
    rows = jsonl.read_rows(os.path.join(cell_dir, "metrics.jsonl"))
    outcome["exact_over_time"] = [
      [row["step"], row["exact_fraction"]] for row in rows if "exact_fraction" in row
    ]
    return outcome

  def write_report(finished):
    result = report(config, finished)
    runner.save_report(work_dir, result, report_markdown(result), REPORT_FILE)
    plot(os.path.join(work_dir, "capacity.png"), result)
    return result

  return runner.run_cells(
    work_dir,
    grid,
    configs,
    train_cell,
    write_report,
    "Capacity study",
    study_config=config,
    resumable=RESUMABLE_CHANGES,
    outcome_keys=OUTCOME_KEYS,
  )
