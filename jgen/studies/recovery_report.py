"""The recovery study's report (jgen/studies/recovery.py): report.md's tables and text, and
modes_over_time.png, both drawn from the report that `recovery.build_report` returns."""

import statistics

from jgen.studies import runner
from jgen.viz.plots import new_figure, save_figure

REFERENCE = "none"  # the intervention every other is tested against: first in every table


def _p(value) -> str:
  return "n/a" if value is None else (f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}")


def _rate_text(rate: dict) -> str:
  low, high = rate["wilson_95"]
  return f"{rate['count']}/{rate['trials']} = {rate['rate']:.2f} [{low:.2f}, {high:.2f}]"


def _setting_text(setting: dict) -> str:
  parts = [f"{k}={v}" for k, v in runner.workdir.flatten(setting["overrides"]).items()]
  parts += [f"reset {setting['reset']}"] if setting["reset"] else []
  parts += [f"seed + {setting['seed_offset']}"] if setting["seed_offset"] else []
  return ", ".join(parts) or "nothing changed"


def report_markdown(config, report: dict) -> str:
  base, study, stage1 = config.base, config.study, report["stage1"]
  g, d = base.model.generator, base.model.discriminator
  triggers, lost = stage1["trigger_steps"], stage1["lost_modes_per_case"]
  seeds = stage1["seeds_run"]
  lines = [
    "# Recovery from collapse",
    "",
    f"Base run: {base.data.name}, {base.data.num_train:,} points, batch {base.train.batch_size}, "
    f"G {g.depth}x{g.width}, D {d.depth}x{d.width} ({d.name}), {base.optimizer.name} lr "
    f"{base.optimizer.learning_rate:g}, {base.sampler.kind}; each seed stopped at its first mode "
    f"drop (>= {base.collapse.mode_drop} modes below the best evaluation since arming), at most "
    f"{base.train.num_steps:,} steps. Branches: {study.window:,} steps from the trigger, "
    f"evaluated every {study.eval_every}.",
    "",
    f"Stage 1: {len(seeds)} seeds run ({min(seeds, default='-')}-{max(seeds, default='-')}), "
    f"{len(triggers)} with a case"
    + (
      f"; trigger steps {min(triggers):,}-{max(triggers):,} (median "
      f"{statistics.median(triggers):,.0f}); lost modes per case {min(lost)}-{max(lost)}."
      if triggers
      else "."
    ),
    "",
    report["regain_definition"],
  ]
  if not report["interventions"]:
    return "\n".join([*lines, ""])
  check, cases = report["verification"], report["cases"]
  lines += [
    "",
    f"Cases branched: {cases}, one per seed. Each was replayed from its checkpoint to its "
    f"trigger ({check['replayed_steps']:,} steps in all, every one matching the recorded trace "
    f"bit for bit); the replayed state reproduced the recorded trigger evaluation in "
    f"{check['triggers_reproduced']}/{cases} cases.",
    "",
    "| intervention | regained [95% Wilson] | at window end [95% Wilson] | modes at end | "
    "median steps to regain | discordant: none only / this only | McNemar exact p | Holm p |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for e in report["interventions"]:
    median, test = e["median_steps_to_regain"], e.get("mcnemar_regained")
    cells = [
      f"`{e['name']}`",
      _rate_text(e["regained"]),
      _rate_text(e["regained_at_end"]),
      f"{e['modes_at_end']['mean']:.2f} ± {e['modes_at_end']['standard_error'] or 0:.2f}",
      "n/a" if median is None else f"{median:,.0f}",
    ]
    if test is None:
      cells += ["(reference)", "", ""]
    else:
      cells += [
        f"{test['only_none']} / {test['only_intervention']}",
        _p(test["p_value"]),
        _p(test["holm_p_value"]),
      ]
    lines.append("| " + " | ".join(cells) + " |")
  secondary = [
    f"`{e['name']}` {_p(e['mcnemar_regained_at_end']['p_value'])}"
    for e in report["interventions"][1:]
  ]
  lines += [
    "",
    "McNemar's exact test (two-sided; the binomial test on the discordant cases) compares each "
    "intervention with `none` on the same cases; Holm's adjustment runs over the "
    f"{len(secondary)} comparisons of the primary endpoint. Exact p at the window's end "
    f"(secondary): {', '.join(secondary)}.",
    "",
    "What each intervention did at the trigger:",
    "",
  ]
  for e in report["interventions"]:
    lines.append(f"- `{e['name']}`: {_setting_text(e['setting'])} ({'; '.join(e['notes'])})")
  one, two = stage1["cpu_seconds"] / 60, report["stage2_cpu_seconds"] / 60
  lines += [
    "",
    "![modes over time](modes_over_time.png)",
    "",
    f"CPU time of the cells: {one + two:.1f} min (recording {one:.1f}, branching {two:.1f}).",
    "",
  ]
  return "\n".join(lines)


def plot_report(path: str, report: dict) -> None:
  """Modes over the window, averaged over cases, one line per intervention."""
  figure = new_figure(7.0, 3.6)
  axes = figure.add_subplot(1, 1, 1)
  for color, entry in enumerate(report["interventions"]):
    steps, modes = zip(*entry["modes_over_time"], strict=True)
    reference = entry["name"] == REFERENCE  # black and thick: the curve the others are read against
    style = {"color": "black", "linewidth": 2.0} if reference else {"color": f"C{color}"}
    axes.plot(steps, modes, label=entry["name"], **style)
  axes.set_xlabel("steps after the trigger", fontsize=8)
  axes.set_ylabel(f"modes (mean of {report['cases']} cases)", fontsize=8)
  axes.tick_params(labelsize=7)
  axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  save_figure(figure, path)
