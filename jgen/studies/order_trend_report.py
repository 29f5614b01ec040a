"""The sampling-order study's report (jgen/studies/sampling_order_trend.py): report.md's tables
and text and modes_over_time.png, drawn from the report that `build_report` returns and the
finished cells."""

import math

from jgen.data import mixtures
from jgen.viz.plots import new_figure, save_figure

# The preregistered contrast: the most repetitive order against the one every run uses.
BASELINE, MOST_REPETITIVE = "epoch_shuffle", "streak64"


def num_modes(config) -> int:
  """The mixture's mode count: the N at which the design trains on one point per mode."""
  return mixtures.get_mixture(config.base.data.name).num_modes


def _f(value, digits=2) -> str:
  return "n/a" if value is None else f"{value:.{digits}f}"


def _p(value) -> str:
  """A p-value; a permutation p-value is never below 1 / (1 + permutations), so small ones
  are shown in full rather than as 0.0000."""
  if value is None:
    return "n/a"
  return f"{value:.4f}" if value >= 0.001 else f"{value:.1e}"


def report_markdown(report: dict, config) -> str:
  base = config.base
  lines = [
    "# Sampling-order study (preregistered: docs/preregistration/sampling_order.md)",
    "",
    "Every number below comes from `python -m jgen.study "
    "--config=configs/study_sampling_order_trend.py --workdir=W`, bit for bit under the lock "
    "on the CPU that ran it (XLA may compile other code for another CPU); rerun it on a "
    "finished W to rebuild this report.",
    "",
    f"Ring8, G {base.model.generator.depth} x {base.model.generator.width}, D "
    f"{base.model.discriminator.depth} x {base.model.discriminator.width}, batch "
    f"{base.train.batch_size} ({config.study.one_per_mode_batch} at N = {num_modes(config)}), "
    f"{base.train.num_steps} steps, evaluation every "
    f"{base.train.eval_every} on {base.eval.num_samples} samples; {config.study.seeds} seeds "
    f"(from {base.seed}) under every order. Endpoint: mean modes over the last "
    f"{config.study.endpoint_evals} evaluations. Collapsed: a mode missing at the final "
    "evaluation.",
    "",
  ]
  lines += [
    "## Summary",
    "",
    f"| block | family | {BASELINE} collapsed | {MOST_REPETITIVE} collapsed | most − least "
    "repetitive, modes [95%] | trend p | Holm p | verdict |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for block in report["blocks"]:
    low, high = block["extreme_difference_95"]
    rates = [
      block["per_order"].get(name, {}).get("collapse_rate") for name in (BASELINE, MOST_REPETITIVE)
    ]
    lines.append(
      f"| {block['name']} | {block['family']} | {_f(rates[0])} | {_f(rates[1])} | "
      f"{block['extreme_difference']:+.2f} [{low:+.2f}, {high:+.2f}] | "
      f"{_p(block['trend']['p_value'])} | {_p(block['holm_p_value'])} | {block['verdict']} |"
    )
  lines.append("")
  for block in report["blocks"]:
    lines += [
      f"## {block['discriminator']} D, {block['optimizer']}, N = {block['num_train']} "
      f"({block['family']})",
      "",
      "Manipulation check (index streams, seed 0): repeat = fraction of steps sharing an "
      "example with the previous batch; gap = steps between two draws of one example; mix = "
      "variance of a batch's mode shares over that of i.i.d. batches.",
      "",
      "| order | score | repeat | gap q01 / median / q99 | mix | endpoint (sd) | collapsed "
      "[95% Wilson] | final rKL (undefined) |",
      "|---|---|---|---|---|---|---|---|",
    ]
    for name, score in zip(block["orders"], block["scores"], strict=True):
      check, result = block["manipulation"][name], block["per_order"][name]
      gaps = check["gaps"]
      low, high = result["collapse_rate_wilson_95"]
      lines.append(
        f"| {name} | {score:g} | {check['repeat_fraction']:.3f} | "
        f"{_f(gaps.get('q01'), 0)} / {_f(gaps.get('q50'), 0)} / {_f(gaps.get('q99'), 0)} | "
        f"{_f(check['mode_mix']['ratio'])} | {result['endpoint']['mean']:.2f} "
        f"({result['endpoint']['sd']:.2f}) | {result['collapsed']}/{config.study.seeds} "
        f"[{low:.2f}, {high:.2f}] | {_f(result['reverse_kl_mean'], 3)} "
        f"({result['reverse_kl_undefined']}) |"
      )
    trend = block["trend"]
    lo95, hi95 = block["extreme_difference_95"]
    lo90, hi90 = block["extreme_difference_90"]
    power = ", ".join(
      f"{_f(p)} for {d} modes" for d, p in block["power"]["by_extreme_difference"].items()
    )
    lines += [
      "",
      f"- Scores: {block['scoring']}.",
      f"- {trend['method']}: p = {_p(trend['p_value'])} ({trend['permutations']} "
      f"permutations); Holm-adjusted p = {_p(block['holm_p_value'])}.",
      f"- Slope {block['slope']:+.3f} modes per score unit; implied most − least repetitive "
      f"difference {block['extreme_difference']:+.2f} modes, 95% bootstrap [{lo95:+.2f}, "
      f"{hi95:+.2f}], 90% [{lo90:+.2f}, {hi90:+.2f}].",
      f"- Achieved power (endpoint sd {block['endpoint_sd']:.2f}, one-sided alpha "
      f"{block['power']['alpha']:.4f}): {power}.",
    ]
    change = block["versus_baseline"].get(MOST_REPETITIVE)
    if change:
      rate = change["collapse_rate_difference"]
      lines.append(
        f"- Collapse rate {MOST_REPETITIVE} − {BASELINE}: {rate['difference']:+.2f} "
        f"[{rate['interval'][0]:+.2f}, {rate['interval'][1]:+.2f}] ({rate['method']})."
      )
    test = block["collapse_across_orders"]
    lines += [
      f"- Collapse across orders, {test['method']}: p = {_p(test['p_value'])}.",
      f"- **Verdict: {block['verdict']}.**",
      "",
      f"| order − {BASELINE} | endpoint difference [95% paired bootstrap] | collapse-rate "
      "difference [95% Newcombe] |",
      "|---|---|---|",
    ]
    for name, change in block["versus_baseline"].items():
      rate = change["collapse_rate_difference"]
      lo, hi = change["endpoint_difference_95"]
      lines.append(
        f"| {name} | {change['endpoint_difference']:+.2f} [{lo:+.2f}, {hi:+.2f}] | "
        f"{rate['difference']:+.2f} [{rate['interval'][0]:+.2f}, {rate['interval'][1]:+.2f}] |"
      )
    lines.append("")
  return "\n".join(lines)


def plot_report(path_prefix: str, report: dict, finished, config) -> None:
  """modes_over_time.png: per block, each order's mean modes over training."""
  blocks = report["blocks"]
  columns = min(3, len(blocks))
  rows = math.ceil(len(blocks) / columns)
  figure = new_figure(3.6 * columns, 2.8 * rows)
  seeds = config.study.seeds
  for i, (block, (_, saved)) in enumerate(zip(blocks, finished, strict=True)):
    axes = figure.add_subplot(rows, columns, i + 1)
    for v, name in enumerate(block["orders"]):
      members = saved["outcomes"][v * seeds : (v + 1) * seeds]
      steps = [step for step, _ in members[0]["modes_over_time"]]
      mean = [sum(m["modes_over_time"][t][1] for m in members) / seeds for t in range(len(steps))]
      axes.plot(steps, mean, color=f"C{v}", label=name, linewidth=1.2)
    axes.set_title(block["name"], fontsize=8)
    axes.set_xlabel("step", fontsize=8)
    axes.set_ylabel("modes (mean over seeds)", fontsize=8)
    axes.legend(fontsize=6)
  save_figure(figure, f"{path_prefix}modes_over_time.png")
