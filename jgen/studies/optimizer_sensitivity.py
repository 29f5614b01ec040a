"""Which generator is insensitive to the optimizer? Five families x optimizer x learning rate.

configs/study_optimizer.py; docs/preregistration/optimizer_sensitivity.md states the design and
the definitions before the confirmatory run. Families: the per-sample GAN (configs/gan.py), the
set-D GAN (configs/gan_setd.py), flow matching (configs/flow.py), noise prediction
(configs/flow.py:objective=noise_prediction) and the discriminator flow (configs/dflow.py), each
from its own config but at one width, one budget and one learning-rate decay for all.

For every family, optimizer {adam, momentum, sgd} and data set, one population trains a grid of
`study.lr_points` log-spaced learning rates spanning `study.lr_decades` decades around the
family's rate for that optimizer (`study.learning_rates`), `study.seeds` seeds each (every rate
sees the same seeds). When the best rate (lowest mean sliced W1) lies on the grid's edge, the
cell trains `study.widen_points` more rates past that edge, up to `study.widen_rounds` times, so
that every optimum the budget allows is bracketed. A population that goes non-finite reruns
each of its rates alone; a rate that diverges again counts as infinitely far
(jgen/studies/sensitivity.py defines best rate, basin and spread).
"""

import math
import os

from jgen.core import jsonl
from jgen.run import loop
from jgen.studies import runner, sensitivity, stats
from jgen.viz.plots import new_figure, save_figure

REPORT_FILE = "report.md"
# Study keys that may change on a rerun: which cells, and the tolerance the report applies.
RESUMABLE_CHANGES = ("study.families", "study.optimizers", "study.data", "study.basin_tolerance")
OUTCOME_KEYS = ("by_rate",)
METRICS = ("modes", "high_quality", "reverse_kl", "sliced_w1")


def grid_multipliers(config) -> list[float]:
  """`study.lr_points` factors 10^(-d/2) .. 10^(d/2), d = study.lr_decades, log-spaced."""
  points, decades = config.study.lr_points, config.study.lr_decades
  if points < 2 or decades <= 0:
    raise ValueError(
      f"study.lr_points={points} and study.lr_decades={decades}: need >= 2 points over > 0 decades"
    )
  return [10 ** (decades * (k / (points - 1) - 0.5)) for k in range(points)]


def cells(config) -> list[dict]:
  """One cell per (family, optimizer, data): {name, family, optimizer, data}."""
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
  """The cell's first grid: the multipliers x the family's rate for its optimizer."""
  center = config.study.learning_rates[cell["family"]][cell["optimizer"]]
  return [m * center for m in grid_multipliers(config)]


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
    },
  )


def member_outcomes(rows: list[dict]) -> list[dict]:
  """Per member: the final evaluation's METRICS, its number of modes and the sliced-W1 curve."""
  final = [row for row in rows if "modes" in row][-1]
  distances = [row for row in rows if "distance/sliced_w1" in row]
  return [
    {
      "modes": final["modes"][m],
      "num_modes": len(final["mode_counts"][m]),
      "high_quality": final["high_quality"][m],
      "reverse_kl": stats.finite_or_none(final["reverse_kl"][m]),
      "sliced_w1": stats.finite_or_none(distances[-1]["distance/sliced_w1"][m]),
      "w1_curve": [
        [row["step"], stats.finite_or_none(row["distance/sliced_w1"][m])] for row in distances
      ],
    }
    for m in range(len(final["modes"]))
  ]


def _train(run, cell_dir: str, rates: list[float], seeds: int) -> list[dict]:
  runner.train(run, cell_dir)
  members = member_outcomes(jsonl.read_rows(os.path.join(cell_dir, "metrics.jsonl")))
  return [
    {"lr": rate, "diverged": False, "seeds": members[i * seeds : (i + 1) * seeds]}
    for i, rate in enumerate(rates)
  ]


def _where(error: loop.NonFiniteError) -> str:
  return f"non-finite loss at step {error.step} ({error.values})"


def train_rates(config, cell: dict, rates: list[float], cell_dir: str) -> list[dict]:
  """One population for `rates`; if it stops on a non-finite loss, each rate alone."""
  seeds = config.study.seeds
  try:
    return _train(run_config(config, cell, rates), cell_dir, rates, seeds)
  except loop.NonFiniteError as error:
    by_rate = []
    for rate in rates:  # one population per rate: a divergent rate does not stop the rest
      try:
        by_rate += _train(
          run_config(config, cell, [rate]), os.path.join(cell_dir, f"lr_{rate:g}"), [rate], seeds
        )
      except loop.NonFiniteError as alone:
        by_rate.append({"lr": rate, "diverged": _where(alone), "seeds": []})
    return [dict(entry, population_error=_where(error)) for entry in by_rate]


def train_cell(config, cell: dict, cell_dir: str) -> dict:
  """The cell's grid, widened past an edge that holds the best rate (study.widen_rounds)."""
  by_rate = train_rates(config, cell, cell_rates(config, cell), cell_dir)
  widened = 0
  while widened < config.study.widen_rounds:
    top = sensitivity.best(by_rate)
    more = sensitivity.next_rates(
      [entry["lr"] for entry in by_rate], top["index"], config.study.widen_points
    )
    if not more or not math.isfinite(top["endpoint"]):
      break
    widened += 1
    by_rate += train_rates(config, cell, more, os.path.join(cell_dir, f"widen_{widened}"))
  return {"cell": cell, "widened": widened, "by_rate": sorted(by_rate, key=lambda e: e["lr"])}


def _mean(values) -> dict:
  mean, error = stats.mean_and_standard_error([v for v in values if v is not None])
  return {"mean": stats.finite_or_none(mean), "standard_error": stats.finite_or_none(error)}


def mean_curve(seeds: list[dict]) -> list[list[float]]:
  """The seeds' mean sliced W1 at each evaluation step."""
  if not seeds:
    return []
  curve = []
  for t, (step, _) in enumerate(seeds[0]["w1_curve"]):
    values = [seed["w1_curve"][t][1] for seed in seeds if seed["w1_curve"][t][1] is not None]
    curve.append([step, float(sum(values) / len(values)) if values else None])
  return curve


def build_report(finished, config) -> dict:
  """Every rate's means, and per (data, family) the sensitivity numbers and best-rate curves."""
  tolerance = config.study.basin_tolerance
  rates, grouped = [], {}
  for cell, outcome in finished:
    for entry in outcome["by_rate"]:
      rates.append(
        {
          **{k: cell[k] for k in ("family", "optimizer", "data")},
          "lr": entry["lr"],
          "diverged": bool(entry["diverged"]),
          **{m: _mean(seed[m] for seed in entry["seeds"]) for m in METRICS},
          "every_mode": sum(s["modes"] == s["num_modes"] for s in entry["seeds"]),
          "seeds": len(entry["seeds"]),
        }
      )
    grouped.setdefault((cell["data"], cell["family"]), {})[cell["optimizer"]] = outcome
  families = []
  for (data, family), outcomes in grouped.items():
    result = sensitivity.family_sensitivity(
      {name: outcome["by_rate"] for name, outcome in outcomes.items()}, tolerance
    )
    for name, outcome in outcomes.items():
      top = result["optimizers"][name]["best"]
      at_best = next(e for e in outcome["by_rate"] if e["lr"] == top["lr"])
      curve = mean_curve(at_best["seeds"])
      result["optimizers"][name].update(
        widened=outcome["widened"],
        modes_at_best=_mean(s["modes"] for s in at_best["seeds"])["mean"],
        curve_at_best=curve,
        flattening=sensitivity.flattening(curve),
      )
    families.append({"data": data, "family": family, **result})
  return stats.finite_or_none({"families": families, "rates": rates})


def _number(value, digits: int = 3) -> str:
  return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(bounds) -> str:
  return "" if bounds is None else f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def report_markdown(report: dict, config) -> str:
  study, base = config.study, config.base
  steps = ", ".join(f"{name} {base[name].train.num_steps}" for name in base)
  lines = [
    "# Optimizer sensitivity: spread of the best quality across optimizers, and basin widths",
    "",
    f"{study.seeds} seeds per learning rate; {study.lr_points} log-spaced rates over "
    f"{study.lr_decades:g} decades around each family's rate per optimizer, widened past an edge "
    f"that holds the best rate ({study.widen_points} rates per round, at most "
    f"{study.widen_rounds} rounds); steps: {steps}; learning-rate decay: every family "
    f"{next(iter(base.values())).train.lr_decay}. Endpoint: sliced W1 to the mixture (lower "
    f"is better), mean over seeds. Spread: max - min over optimizers of each one's best mean "
    f"sliced W1, with a 95% bootstrap interval over seeds (paired across cells, best rates "
    f"chosen again in each resample). Basin: the contiguous rates around the best whose mean "
    f"is at most best x {1 + study.basin_tolerance:g}; its width in decades.",
    "",
    "| data | family | spread of best W1 [95% CI] | max / min | optimizer: best lr (W1, modes), "
    "basin decades | every optimum bracketed |",
    "|---|---|---|---|---|---|",
  ]
  for f in report["families"]:
    parts = []
    for name, o in f["optimizers"].items():
      b = o["best"]
      parts.append(
        f"{name}: {b['lr']:.2g} ({_number(b['endpoint'])}, {_number(o['modes_at_best'], 1)}), "
        f"{o['basin']['decades']:.1f}"
      )
    lines.append(
      f"| {f['data']} | {f['family']} | {_number(f['spread'])} {_interval(f['spread_95'])} | "
      f"{_number(f['ratio'], 2)} | "
      f"{'; '.join(parts)} | {'yes' if f['every_optimum_bracketed'] else 'no'} |"
    )
  lines += [
    "",
    "Flattening: relative fall of the best rate's mean sliced W1 over the last 40% of steps "
    "(0: flat).",
    "",
    "| data | family | " + " | ".join(runner.axis(config, "study.optimizers")) + " |",
    "|---|---|" + "---|" * len(runner.axis(config, "study.optimizers")),
  ]
  for f in report["families"]:
    values = [_number(o["flattening"], 2) for o in f["optimizers"].values()]
    lines.append(f"| {f['data']} | {f['family']} | " + " | ".join(values) + " |")
  lines += [
    "",
    "| family | optimizer | data | lr | sliced W1 (± s.e.) | modes | high quality | reverse KL "
    "| every mode |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in report["rates"]:
    if r["diverged"]:
      cell = f"| {r['family']} | {r['optimizer']} | {r['data']} | {r['lr']:.3g} |"
      lines.append(f"{cell} diverged | | | | |")
      continue
    w1 = r["sliced_w1"]
    lines.append(
      f"| {r['family']} | {r['optimizer']} | {r['data']} | {r['lr']:.3g} | "
      f"{_number(w1['mean'])} ± {_number(w1['standard_error'])} | "
      f"{_number(r['modes']['mean'], 2)} | {_number(r['high_quality']['mean'])} | "
      f"{_number(r['reverse_kl']['mean'])} | {r['every_mode']}/{r['seeds']} |"
    )
  return "\n".join(lines) + "\n"


def plot_report(path_prefix: str, report: dict) -> None:
  """basins.png (mean sliced W1 against the rate) and curves.png (at each best rate)."""
  data = sorted({f["data"] for f in report["families"]})
  families = list(dict.fromkeys(f["family"] for f in report["families"]))
  for name in ("basins", "curves"):
    figure = new_figure(2.6 * len(families), 2.3 * len(data))
    for f in report["families"]:
      axes = figure.add_subplot(
        len(data),
        len(families),
        data.index(f["data"]) * len(families) + 1 + families.index(f["family"]),
      )
      for i, (optimizer, o) in enumerate(f["optimizers"].items()):
        if name == "basins":
          points = [
            (r["lr"], r["sliced_w1"]["mean"])
            for r in report["rates"]
            if (r["family"], r["data"], r["optimizer"]) == (f["family"], f["data"], optimizer)
            and r["sliced_w1"]["mean"] is not None
            and not r["diverged"]
          ]
          axes.set_xscale("log")
        else:
          points = [(s, v) for s, v in o["curve_at_best"] if v is not None]
        if points:
          axes.plot(
            *zip(*points, strict=True), marker="o", markersize=2, color=f"C{i}", label=optimizer
          )
      axes.set_yscale("log")
      axes.set_title(f"{f['family']} · {f['data']}", fontsize=7)
      axes.set_xlabel("learning rate" if name == "basins" else "step", fontsize=7)
      axes.set_ylabel("sliced W1", fontsize=7)
      axes.tick_params(labelsize=6)
      axes.legend(fontsize=5)
    save_figure(figure, f"{path_prefix}{name}.png")


def run_study(config, work_dir: str) -> dict:
  """Trains every unfinished cell, rewriting the report after each; returns the report."""
  grid = cells(config)
  configs = [run_config(config, cell, cell_rates(config, cell)) for cell in grid]

  def write_report(finished):
    report = build_report(finished, config)
    runner.save_report(work_dir, report, report_markdown(report, config), REPORT_FILE)
    plot_report(os.path.join(work_dir, ""), report)
    return report

  return runner.run_cells(
    work_dir,
    grid,
    configs,
    lambda cell, run, cell_dir: train_cell(config, cell, cell_dir),
    write_report,
    "Optimizer study",
    study_config=config,
    resumable=RESUMABLE_CHANGES,
    outcome_keys=OUTCOME_KEYS,
  )
