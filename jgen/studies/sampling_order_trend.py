"""The preregistered sampling-order study (configs/study_sampling_order_trend.py).

Each cell is one block of the design, (discriminator, optimizer, N), trained as one population
under W/cells/NAME/: `study.seeds` seeds under each order (population variants over the
sampler, members seed .. seed + seeds - 1 in every order), so the orders are compared on common
seeds. A cell's outcome.json holds every member's outcome and the manipulation check (each
order's index stream measured by jgen/data/order_stats.py). After every cell, W/report.json,
W/report.md and the plots are rewritten from the cells finished so far.

Endpoints, tests and intervals are those of docs/preregistration/sampling_order.md; the
statistics are jgen/studies/effects.py, the report's text and plot
jgen/studies/order_trend_report.py.
"""

import os

import ml_collections
import numpy as np

from jgen.core import jsonl
from jgen.data import order_stats, samplers
from jgen.studies import effects, runner, stats
from jgen.studies.order_trend_report import BASELINE, num_modes, plot_report, report_markdown

REPORT_FILE = "report.md"
RESUMABLE_CHANGES = (
  "study.num_train",
  "study.primary_optimizers",
  "study.secondary_optimizers",
  "study.permutations",
  "study.bootstrap_resamples",
  "study.power_differences",
)
OUTCOME_KEYS = ("outcomes", "manipulation")
FAMILIES = {"per_sample": "primary", "set": "secondary"}
ALPHA = 0.05


def cells(config: ml_collections.ConfigDict) -> list[dict]:
  """Every block: {name, discriminator, optimizer, num_train, family}."""
  settings = config.study.settings
  sizes = runner.axis(config, "study.num_train", number=int)
  grid = []
  for discriminator, key in (("per_sample", "primary"), ("set", "secondary")):
    if key == "secondary" and not config.study.secondary_optimizers.strip():
      continue  # no secondary family
    for optimizer in runner.axis(config, f"study.{key}_optimizers", settings.optimizers):
      for n in sizes:
        grid.append(
          {
            "name": f"{discriminator}-{optimizer}-n{n}",
            "discriminator": discriminator,
            "optimizer": optimizer,
            "num_train": n,
            "family": FAMILIES[discriminator],
          }
        )
  return grid


def orders(config) -> list[str]:
  names = runner.axis(config, "study.orders", config.study.settings.orders)
  missing = [name for name in names if name not in config.study.settings.scores]
  if missing:
    raise ValueError(f"study.settings.scores lacks a repetitiveness score for {missing}")
  return names


def _order_config(config, cell: dict, order: str | None):
  settings = config.study.settings
  return runner.cell_config(
    config.base,
    {"data.num_train": cell["num_train"]},
    # N = the mode count: one point per mode (a balanced training set), and a batch smaller
    # than N, so that the orders differ in what a batch holds (docs/preregistration).
    {"data.balanced": True, "train.batch_size": config.study.one_per_mode_batch}
    if cell["num_train"] == num_modes(config)
    else {},
    settings.discriminators[cell["discriminator"]],
    settings.optimizers[cell["optimizer"]],
    settings.orders[order] if order else {},
  )


def variants_text(config) -> str:
  """population.variants: one value per order for every sampler key any order sets."""
  names = orders(config)
  paths = sorted(
    {
      f"sampler.{key}"
      for name in names
      for key in config.study.settings.orders[name].get("sampler", {})
    }
  )
  columns = []
  for path in paths:
    key = path.split(".")[1]
    values = [
      config.study.settings.orders[name].get("sampler", {}).get(key, config.base.sampler[key])
      for name in names
    ]
    columns.append(f"{path}={'|'.join(str(value) for value in values)}")
  return ";".join(columns)


def cell_config(config, cell: dict) -> ml_collections.ConfigDict:
  names = orders(config)
  return runner.cell_config(
    _order_config(config, cell, None),
    {
      "population.size": config.study.seeds * len(names),
      "population.variants": variants_text(config),
    },
  )


def manipulation(config, cell: dict) -> dict:
  """Each order's index stream at this block's N and batch, measured (member seed 0)."""
  checks = {}
  for order in orders(config):
    run = _order_config(config, cell, order)
    stream = samplers.index_stream(run, 0, config.study.manipulation_steps)
    indices = np.stack([row for _, row in stream])
    labels, num_modes = order_stats.training_labels(run)
    checks[order] = order_stats.order_stats(indices, labels, num_modes)
  return checks


def endpoint(outcome: dict, last: int) -> float:
  """Mean modes over the member's last `last` evaluations."""
  values = [modes for _, modes in outcome["modes_over_time"][-last:]]
  return sum(values) / len(values)


def _scores_used(config, names: list[str], checks: dict) -> tuple[list[float], str]:
  """The preregistered scores, or, if the measured repeat fractions contradict their ranking,
  the measured ranking (as the preregistration says)."""
  scores = [float(config.study.settings.scores[name]) for name in names]
  repeats = [checks[name]["repeat_fraction"] for name in names]
  contradicted = any(
    scores[i] < scores[j] and repeats[i] > repeats[j] + 1e-12
    for i in range(len(names))
    for j in range(len(names))
  )
  if not contradicted:
    return scores, "preregistered"
  ranks = np.argsort(np.argsort(repeats, kind="stable"), kind="stable").astype(float)
  return ranks.tolist(), "measured ranking of repeat fractions (preregistered ranking contradicted)"


def block_report(config, cell: dict, saved: dict) -> dict:
  names = orders(config)
  seeds = config.study.seeds
  outcomes = saved["outcomes"]
  last = config.study.endpoint_evals
  table = np.array(
    [[endpoint(outcomes[v * seeds + s], last) for v in range(len(names))] for s in range(seeds)]
  )
  scores, scoring = _scores_used(config, names, saved["manipulation"])
  resamples = config.study.bootstrap_resamples
  per_order = {}
  for v, name in enumerate(names):
    members = outcomes[v * seeds : (v + 1) * seeds]
    collapsed = sum(o["collapsed"] for o in members)
    kls = [o["reverse_kl"] for o in members if o["reverse_kl"] is not None]
    mean, error = stats.mean_and_standard_error(table[:, v].tolist())
    per_order[name] = {
      "endpoint": {"mean": mean, "standard_error": error, "sd": float(table[:, v].std(ddof=1))},
      "collapsed": collapsed,
      "collapse_rate": collapsed / seeds,
      "collapse_rate_wilson_95": list(stats.wilson_interval(collapsed, seeds)),
      "final_modes_mean": sum(o["modes"] for o in members) / seeds,
      "reverse_kl_mean": sum(kls) / len(kls) if kls else None,
      "reverse_kl_undefined": seeds - len(kls),
    }
  base = names.index(BASELINE)
  versus = {}
  for v, name in enumerate(names):
    if v == base:
      continue
    paired = table[:, v] - table[:, base]
    draws = np.random.default_rng(v).integers(0, seeds, (resamples, seeds))
    means = paired[draws].mean(axis=1)
    versus[name] = {
      "endpoint_difference": float(paired.mean()),
      "endpoint_difference_95": [float(np.quantile(means, q)) for q in (0.025, 0.975)],
      "collapse_rate_difference": effects.newcombe_interval(
        per_order[name]["collapsed"], seeds, per_order[BASELINE]["collapsed"], seeds
      ),
    }
  trend = effects.trend_permutation_test(table, scores, config.study.permutations, seed=0)
  extreme = effects.extreme_difference(table, scores)
  interval_95 = effects.bootstrap_interval(
    effects.extreme_difference, table, scores, 0.95, resamples, seed=1
  )
  interval_90 = effects.bootstrap_interval(
    effects.extreme_difference, table, scores, 0.90, resamples, seed=1
  )
  sd = float(np.sqrt(np.mean(table.var(axis=0, ddof=1))))
  primary_blocks = len(runner.axis(config, "study.primary_optimizers")) * len(
    runner.axis(config, "study.num_train", number=int)
  )
  alpha = ALPHA / primary_blocks  # the strictest Holm level, as in the preregistered power
  power = {
    str(difference): effects.trend_power(difference, sd, seeds, scores, alpha) if sd > 0 else None
    for difference in runner.axis(config, "study.power_differences", number=float)
  }
  baseline_rate = per_order[BASELINE]["collapse_rate"]
  low, high = config.study.saturated_outside
  return {
    **cell,
    "orders": names,
    "scores": scores,
    "scoring": scoring,
    "manipulation": saved["manipulation"],
    "per_order": per_order,
    "versus_baseline": versus,
    "trend": trend,
    "slope": effects.trend_slope(table, scores),
    "extreme_difference": extreme,
    "extreme_difference_95": list(interval_95),
    "extreme_difference_90": list(interval_90),
    "equivalent": bool(
      -config.study.equivalence_bound <= interval_90[0]
      and interval_90[1] <= config.study.equivalence_bound
    ),
    "endpoint_sd": sd,
    "power": {"alpha": alpha, "by_extreme_difference": power},
    "saturated": cell["num_train"] == num_modes(config) and not low <= baseline_rate <= high,
    "collapse_across_orders": stats.compare_groups(
      {
        name: [o["collapsed"] for o in outcomes[v * seeds : (v + 1) * seeds]]
        for v, name in enumerate(names)
      }
    ),
  }


def build_report(config, finished: list[tuple[dict, dict]]) -> dict:
  blocks = [block_report(config, cell, saved) for cell, saved in finished]
  for family in ("primary", "secondary"):
    members = [b for b in blocks if b["family"] == family and not b["saturated"]]
    adjusted = effects.holm({b["name"]: b["trend"]["p_value"] for b in members})
    for block in blocks:
      if block["family"] == family:
        block["holm_p_value"] = adjusted.get(block["name"])
        block["verdict"] = _verdict(block, config)
  return stats.finite_or_none({"blocks": blocks})


def _verdict(block: dict, config) -> str:
  if block["saturated"]:
    return "saturated baseline: outside the Holm family (preregistered)"
  if block["holm_p_value"] is not None and block["holm_p_value"] < ALPHA:
    return "endpoint falls with repetitiveness (significant after Holm)"
  if block["equivalent"]:
    return f"no effect (90% interval within ±{config.study.equivalence_bound} modes)"
  return "inconclusive"


def run_study(config: ml_collections.ConfigDict, work_dir: str) -> dict:
  """Trains every unfinished block, rewriting the report after each; returns the report."""
  grid = cells(config)
  configs = [cell_config(config, cell) for cell in grid]

  def train_cell(cell, run_config, cell_dir):
    runner.train(run_config, cell_dir)
    rows = jsonl.read_rows(os.path.join(cell_dir, "metrics.jsonl"))
    return {
      "cell": cell,
      "outcomes": stats.member_outcomes(rows, run_config.collapse),
      "manipulation": manipulation(config, cell),
    }

  def write_report(finished):
    report = build_report(config, finished)
    runner.save_report(work_dir, report, report_markdown(report, config), REPORT_FILE)
    plot_report(os.path.join(work_dir, ""), report, finished, config)
    return report

  return runner.run_cells(
    work_dir,
    grid,
    configs,
    train_cell,
    write_report,
    "Order study",
    study_config=config,
    resumable=RESUMABLE_CHANGES,
    outcome_keys=OUTCOME_KEYS,
  )
