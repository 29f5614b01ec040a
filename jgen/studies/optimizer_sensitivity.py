"""Which generator is insensitive to the optimizer? Five families x optimizer x learning rate.

configs/study_optimizer.py. Families: the per-sample GAN (configs/gan.py), the set-D GAN
(configs/gan_setd.py), flow matching (configs/flow.py), noise prediction
(configs/flow.py:objective=noise_prediction) and the discriminator flow (configs/dflow.py),
each from its own config (its default model, loss, sampler and Adam settings). For every
family, optimizer {adam, momentum, sgd} and data set, one population trains the learning
rates `study.lr_multipliers` x the family's learning rate for that optimizer
(`study.learning_rates`) as variants (jgen/run/variants.py), `study.seeds` seeds each, so every
learning rate sees the same seeds. If a member's loss goes non-finite the run loop stops the
whole population; the cell then reruns each learning rate as its own population, and a rate
that diverges again counts every seed as a failure (`diverged` in its outcome).

A seed *succeeds* when its final evaluation captures every mode (PacGAN: at least one
high-quality sample per mode) with at least `study.min_high_quality` of its samples of high
quality. A cell (family, optimizer, learning rate, data) succeeds when all its seeds do. The
report gives, per family, the fraction of cells and of seeds that succeed, with 95% Wilson
intervals (the seeds of one cell share its settings, so the seed interval treats them as
independent trials; read it as a summary, not a test).
"""

import os

from jgen.core import jsonl
from jgen.run import loop
from jgen.studies import runner, stats

REPORT_FILE = "report.md"
# Study keys that may change on a rerun (jgen/studies/runner.py): families, optimizers and data
# choose the cells of the grid; the success threshold is applied by the report.
RESUMABLE_CHANGES = ("study.families", "study.optimizers", "study.data", "study.min_high_quality")
OUTCOME_KEYS = ("by_rate",)  # what the report reads of a cell's outcome.json


def multipliers(config) -> list[float]:
  return runner.axis(config, "study.lr_multipliers", number=float)


def cells(config) -> list[dict]:
  """One population per (family, optimizer, data): {name, family, optimizer, data}."""
  families = runner.axis(config, "study.families", config.base)
  rates = config.study.learning_rates
  every_family_has = [
    name for name in rates[families[0]] if all(name in rates[f] for f in families)
  ]
  return [
    {"name": f"{family}-{optimizer}-{data}", "family": family, "optimizer": optimizer, "data": data}
    for family in families
    for optimizer in runner.axis(config, "study.optimizers", every_family_has)
    for data in runner.axis(config, "study.data")
  ]


def cell_rates(config, cell: dict) -> list[float]:
  """The cell's learning rates: study.lr_multipliers x the family's rate for its optimizer."""
  default = config.study.learning_rates[cell["family"]][cell["optimizer"]]
  return [m * default for m in multipliers(config)]


def run_config(config, cell: dict, rates: list[float]):
  """The family's base config for `cell`, its learning rates as variants of one population."""
  return runner.cell_config(
    config.base[cell["family"]],
    {
      "data.name": cell["data"],
      "optimizer.name": cell["optimizer"],
      "optimizer.learning_rate": rates[0],
      "population.size": config.study.seeds * len(rates),
      "population.variants": (
        "optimizer.learning_rate=" + "|".join(repr(r) for r in rates) if len(rates) > 1 else ""
      ),
      "collapse.trace": False,
    },
  )


def _train(run, cell_dir: str, rates: list[float], seeds: int) -> list[dict]:
  """Trains one population; per learning rate, its seeds' outcomes."""
  runner.train(run, cell_dir)
  rows = jsonl.read_rows(os.path.join(cell_dir, "metrics.jsonl"))
  members = stats.member_outcomes(rows, run.collapse)
  return [
    {"lr": rate, "diverged": False, "seeds": members[i * seeds : (i + 1) * seeds]}
    for i, rate in enumerate(rates)
  ]


def train_cell(config, cell: dict, run, cell_dir: str) -> dict:
  """Trains the cell's population `run`; if it stops on a non-finite loss, each rate alone."""
  seeds, rates = config.study.seeds, cell_rates(config, cell)
  try:
    by_rate = _train(run, cell_dir, rates, seeds)
  except loop.NonFiniteError as error:
    by_rate = []
    for rate in rates:  # one population per rate: a divergent rate does not stop the rest
      try:
        by_rate += _train(
          run_config(config, cell, [rate]), os.path.join(cell_dir, f"lr_{rate:g}"), [rate], seeds
        )
      except loop.NonFiniteError as alone:
        by_rate.append({"lr": rate, "diverged": _where(alone), "seeds": []})
    by_rate = [dict(entry, population_error=_where(error)) for entry in by_rate]
  return {"cell": cell, "by_rate": by_rate}


def _where(error: loop.NonFiniteError) -> str:
  """The step and metrics at which a run went non-finite, as its outcome records them."""
  return f"non-finite loss at step {error.step} ({error.values})"


def seed_succeeds(outcome: dict, min_high_quality: float) -> bool:
  return outcome["modes"] == outcome["num_modes"] and outcome["high_quality"] >= min_high_quality


def build_report(finished, config) -> dict:
  """Per family: cells and seeds that succeed (Wilson 95%); and every cell's numbers."""
  threshold, seeds = config.study.min_high_quality, config.study.seeds
  rows, families = [], {}
  for cell, outcome in finished:
    for entry in outcome["by_rate"]:
      wins = sum(seed_succeeds(o, threshold) for o in entry["seeds"])
      all_modes = sum(o["modes"] == o["num_modes"] for o in entry["seeds"])
      modes, _ = stats.mean_and_standard_error([o["modes"] for o in entry["seeds"]])
      quality, _ = stats.mean_and_standard_error([o["high_quality"] for o in entry["seeds"]])
      row = {
        **{k: cell[k] for k in ("family", "optimizer", "data")},
        "lr": entry["lr"],
        "diverged": bool(entry["diverged"]),
        "seeds_succeeded": wins,
        "seeds_all_modes": all_modes,
        "seeds": seeds,
        "succeeded": wins == seeds,
        "modes_mean": modes,
        "high_quality_mean": quality,
      }
      rows.append(row)
      family = families.setdefault(
        cell["family"], {"cells": [0, 0], "seeds": [0, 0], "all_modes": [0, 0]}
      )
      family["all_modes"][0] += all_modes
      family["all_modes"][1] += seeds
      family["cells"][0] += row["succeeded"]
      family["cells"][1] += 1
      family["seeds"][0] += wins
      family["seeds"][1] += seeds
  summary = {
    name: {
      "cells_succeeded": c[0],
      "cells": c[1],
      "cells_wilson_95": list(stats.wilson_interval(*c)),
      "seeds_succeeded": s[0],
      "seeds": s[1],
      "seeds_wilson_95": list(stats.wilson_interval(*s)),
      "seeds_all_modes": m[0],
      "seeds_all_modes_wilson_95": list(stats.wilson_interval(*m)),
    }
    for name, counts in families.items()
    for c, s, m in [(counts["cells"], counts["seeds"], counts["all_modes"])]
  }
  return stats.finite_or_none({"families": summary, "cells": rows})


def report_markdown(report: dict, config) -> str:
  base = config.base
  steps = ", ".join(f"{name} {base[name].train.num_steps}" for name in base)
  lines = [
    "# Optimizer sensitivity: which generator captures every mode under any optimizer?",
    "",
    f"{config.study.seeds} seeds per cell; learning rates "
    f"{', '.join(f'{m:.3g}' for m in multipliers(config))} x the "
    f"family's default per optimizer; steps: {steps}. A seed succeeds when its final "
    f"evaluation captures every mode with high quality >= {config.study.min_high_quality}; a "
    "cell when all its seeds do. 95% Wilson intervals.",
    "",
    "| family | cells succeeded | fraction [95% CI] | seeds succeeded | fraction [95% CI] | "
    "seeds with every mode (any quality) [95% CI] |",
    "|---|---|---|---|---|---|",
  ]
  for name, f in report["families"].items():
    (cl, ch), (sl, sh) = f["cells_wilson_95"], f["seeds_wilson_95"]
    ml, mh = f["seeds_all_modes_wilson_95"]
    lines.append(
      f"| {name} | {f['cells_succeeded']}/{f['cells']} | "
      f"{f['cells_succeeded'] / f['cells']:.2f} [{cl:.2f}, {ch:.2f}] | "
      f"{f['seeds_succeeded']}/{f['seeds']} | {f['seeds_succeeded'] / f['seeds']:.2f} "
      f"[{sl:.2f}, {sh:.2f}] | {f['seeds_all_modes']}/{f['seeds']} [{ml:.2f}, {mh:.2f}] |"
    )
  lines += [
    "",
    "| family | optimizer | lr | data | seeds succeeded | modes (mean) | high quality (mean) |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in report["cells"]:
    modes = "diverged" if r["diverged"] else f"{r['modes_mean']:.2f}"
    quality = "" if r["diverged"] else f"{r['high_quality_mean']:.3f}"
    if not r["diverged"] and r["modes_mean"] is None:
      modes = "n/a"
    lines.append(
      f"| {r['family']} | {r['optimizer']} | {r['lr']:g} | {r['data']} | "
      f"{r['seeds_succeeded']}/{r['seeds']} | {modes} | {quality} |"
    )
  return "\n".join(lines) + "\n"


def run_study(config, work_dir: str) -> dict:
  """Trains every unfinished cell, rewriting the report after each; returns the report."""
  grid = cells(config)
  configs = [run_config(config, cell, cell_rates(config, cell)) for cell in grid]

  def write_report(finished):
    report = build_report(finished, config)
    runner.save_report(work_dir, report, report_markdown(report, config), REPORT_FILE)
    return report

  return runner.run_cells(
    work_dir,
    grid,
    configs,
    lambda cell, run, cell_dir: train_cell(config, cell, run, cell_dir),
    write_report,
    "Optimizer study",
    study_config=config,
    resumable=RESUMABLE_CHANGES,
    outcome_keys=OUTCOME_KEYS,
  )
