"""The set discriminator's claim at matched capacity (configs/study_set_d_matched.py).

Cells: mixture x discriminator, each a population of `study.seeds` seeds whose D width is chosen
so that its parameter count is the closest to the target (`matched_width`). Per member the
outcome is the final evaluation's modes, high quality, reverse KL and sliced 1-Wasserstein
distance; the report compares each discriminator with `study.reference` on the same mixture
(docs/preregistration/set_d_matched.md says which comparisons are primary).
"""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections

from jgen import models
from jgen.core import jsonl
from jgen.data import mixtures
from jgen.studies import effects, runner, stats

REPORT_FILE = "report.md"
RESUMABLE_CHANGES = ("study.permutations", "study.bootstrap_resamples")
OUTCOME_KEYS = ("outcomes", "parameters")
METRICS = ("modes", "high_quality", "reverse_kl", "sliced_w1")
PRIMARY = "deepsets"  # against the reference, on every mixture: the Holm family
MAX_WIDTH = 4096


def parameter_count(run_config) -> int:
  """Parameters of the discriminator `run_config` builds (shapes only, nothing computed)."""
  model = models.make_discriminator(run_config.model)
  example = jnp.zeros((1, run_config.model.set_size, 2))
  shapes = jax.eval_shape(model.init, jax.random.key(0), example)
  return int(sum(leaf.size for leaf in jax.tree.leaves(shapes)))


def _with_width(run_config, width: int):
  return runner.cell_config(run_config, {"model.discriminator.width": width})


def matched_width(run_config, target: int) -> int:
  """The width whose discriminator's parameter count is the closest to `target` (the smaller
  width on a tie); the count grows with the width, so a bisection finds it."""
  low, high = 1, MAX_WIDTH
  if parameter_count(_with_width(run_config, high)) < target:
    raise ValueError(f"no width up to {MAX_WIDTH} reaches {target} parameters")
  while low < high:  # the first width with at least `target` parameters
    middle = (low + high) // 2
    if parameter_count(_with_width(run_config, middle)) < target:
      low = middle + 1
    else:
      high = middle
  above = parameter_count(_with_width(run_config, low))
  below = parameter_count(_with_width(run_config, low - 1)) if low > 1 else -math.inf
  return low - 1 if target - below <= above - target else low


def target_parameters(config) -> int:
  if config.study.target_params:
    return int(config.study.target_params)
  deepsets = runner.cell_config(config.base, config.study.settings.discriminators.deepsets)
  return parameter_count(deepsets)


def cells(config: ml_collections.ConfigDict) -> list[dict]:
  """Every cell: {name, data, discriminator}."""
  data = runner.axis(config, "study.data", mixtures.MIXTURES)
  kinds = runner.axis(config, "study.discriminators", config.study.settings.discriminators)
  if config.study.reference not in kinds:
    raise ValueError(f"study.reference={config.study.reference!r} is not in study.discriminators")
  return [{"name": f"{d}-{kind}", "data": d, "discriminator": kind} for d in data for kind in kinds]


def cell_config(config, cell: dict, target: int | None = None) -> ml_collections.ConfigDict:
  run = runner.cell_config(
    config.base,
    {"data.name": cell["data"], "population.size": config.study.seeds},
    config.study.settings.discriminators[cell["discriminator"]],
  )
  target = target_parameters(config) if target is None else target
  return _with_width(run, matched_width(run, target))


def member_outcomes(rows: list[dict]) -> list[dict]:
  """Per member: the final evaluation's METRICS and whether it kept every mode."""
  final = [row for row in rows if "modes" in row][-1]
  distance = [row for row in rows if "distance/sliced_w1" in row][-1]
  num_modes = len(final["mode_counts"][0])
  return [
    {
      "modes": final["modes"][m],
      "high_quality": final["high_quality"][m],
      "reverse_kl": stats.finite_or_none(final["reverse_kl"][m]),
      "sliced_w1": stats.finite_or_none(distance["distance/sliced_w1"][m]),
      "every_mode": final["modes"][m] == num_modes,
    }
    for m in range(len(final["modes"]))
  ]


def _summary(values: list) -> dict:
  kept = [v for v in values if v is not None]
  mean, error = stats.mean_and_standard_error(kept)
  return {
    "mean": stats.finite_or_none(mean),
    "standard_error": stats.finite_or_none(error),
    "count": len(kept),
  }


def build_report(config, finished: list[tuple[dict, dict]]) -> dict:
  by_cell = {(cell["data"], cell["discriminator"]): outcome for cell, outcome in finished}
  reference = config.study.reference
  report = {"cells": [], "comparisons": []}
  for (data, kind), outcome in by_cell.items():
    members = outcome["outcomes"]
    kept = sum(member["every_mode"] for member in members)
    report["cells"].append(
      {
        "data": data,
        "discriminator": kind,
        "width": outcome["width"],
        "parameters": outcome["parameters"],
        "seeds": len(members),
        **{metric: _summary([m[metric] for m in members]) for metric in METRICS},
        "every_mode": {
          "count": kept,
          "rate": kept / len(members),
          "wilson_95": list(stats.wilson_interval(kept, len(members))),
        },
      }
    )
    base = by_cell.get((data, reference))
    if kind == reference or base is None:
      continue
    ours, theirs = members, base["outcomes"]
    kept_theirs = sum(member["every_mode"] for member in theirs)
    comparison = {
      "data": data,
      "discriminator": kind,
      "reference": reference,
      "primary": kind == PRIMARY,
      "every_mode_fisher_p": stats.fisher_exact_two_sided(
        kept, len(ours) - kept, kept_theirs, len(theirs) - kept_theirs
      ),
    }
    for metric in METRICS:
      a = [m[metric] for m in ours if m[metric] is not None]
      b = [m[metric] for m in theirs if m[metric] is not None]
      # None where a group has fewer than 2 values (reverse KL is undefined for a member with
      # no high-quality sample).
      comparison[metric] = (
        effects.two_group_difference(
          a, b, config.study.bootstrap_resamples, config.study.permutations
        )
        if len(a) >= 2 and len(b) >= 2
        else None
      )
    report["comparisons"].append(comparison)
  primary = {
    f"{c['data']}-{c['discriminator']}": c["modes"]["p_value"]
    for c in report["comparisons"]
    if c["primary"] and c["modes"] is not None
  }
  adjusted = effects.holm(primary)
  for comparison in report["comparisons"]:
    name = f"{comparison['data']}-{comparison['discriminator']}"
    if comparison["modes"] is not None:
      comparison["modes"]["holm_p"] = adjusted.get(name)
  return report


def _mean_text(summary: dict, digits: int = 2) -> str:
  if summary["mean"] is None:
    return "n/a"
  if summary["standard_error"] is None:
    return f"{summary['mean']:.{digits}f}"
  half = 1.96 * summary["standard_error"]
  return f"{summary['mean']:.{digits}f} ± {half:.{digits}f}"


def report_markdown(report: dict, config) -> str:
  lines = [
    "# The set discriminator at matched capacity",
    "",
    f"Each cell: {config.study.seeds} seeds (from {config.base.seed}) as one population, "
    f"{config.base.train.num_steps:,} steps, final evaluation on "
    f"{config.base.eval.num_samples:,} samples. Mean ± 1.96 standard errors; every mode: seeds "
    "that keep all modes (Wilson 95% interval).",
    "",
    "| data | D | width | params | modes | high quality | reverse KL | sliced W1 | every mode |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for cell in report["cells"]:
    rate = cell["every_mode"]
    low, high = rate["wilson_95"]
    lines.append(
      f"| {cell['data']} | {cell['discriminator']} | {cell['width']} | {cell['parameters']:,} | "
      f"{_mean_text(cell['modes'])} | {_mean_text(cell['high_quality'])} | "
      f"{_mean_text(cell['reverse_kl'])} | {_mean_text(cell['sliced_w1'], 3)} | "
      f"{rate['count']}/{cell['seeds']} [{low:.2f}, {high:.2f}] |"
    )
  lines += [
    "",
    "Against the per-sample D on the same mixture (difference in means, bootstrap 95% interval, "
    "two-sided permutation p; Holm over the primary comparisons, DeepSets against the "
    "per-sample D on each mixture; Fisher's exact test of the every-mode rates):",
    "",
    "| data | D | Δ modes | p (Holm) | Δ high quality | Δ reverse KL | Δ sliced W1 | "
    "every mode: Fisher p |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for c in report["comparisons"]:

    def delta(metric, digits=2, c=c):
      d = c[metric]
      if d is None:
        return "n/a"
      low, high = d["interval_95"]
      return f"{d['difference']:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"

    modes = c["modes"] or {}
    holm = modes.get("holm_p")
    p_text = f"{modes['p_value']:.2g}" if modes else "n/a"
    p_text += f" ({holm:.2g})" if holm is not None else ""
    lines.append(
      f"| {c['data']} | {c['discriminator']} | {delta('modes')} | {p_text} | "
      f"{delta('high_quality')} | {delta('reverse_kl')} | {delta('sliced_w1', 3)} | "
      f"{c['every_mode_fisher_p']:.2g} |"
    )
  return "\n".join(lines) + "\n"


def run_study(config: ml_collections.ConfigDict, work_dir: str) -> dict:
  """Trains every unfinished cell, rewriting the report after each; returns the report."""
  grid = cells(config)
  target = target_parameters(config)
  configs = [cell_config(config, cell, target) for cell in grid]

  def train_cell(cell, run_config, cell_dir):
    runner.train(run_config, cell_dir)
    rows = jsonl.read_rows(os.path.join(cell_dir, "metrics.jsonl"))
    return {
      "cell": cell,
      "width": run_config.model.discriminator.width,
      "parameters": parameter_count(run_config),
      "outcomes": member_outcomes(rows),
    }

  def write_report(finished):
    report = build_report(config, finished)
    report["target_parameters"] = target
    runner.save_report(work_dir, report, report_markdown(report, config), REPORT_FILE)
    return report

  return runner.run_cells(
    work_dir,
    grid,
    configs,
    train_cell,
    write_report,
    "Set-D study",
    study_config=config,
    resumable=RESUMABLE_CHANGES,
    outcome_keys=OUTCOME_KEYS,
  )
