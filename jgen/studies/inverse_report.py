"""The inverse-problem comparison's report (jgen/studies/inverse_comparison.py): mean PSNR per
image group, task and method, and each method's paired difference to the best other column.

Columns: `input` (the degraded image as it stands), `dgn_z`, `dgn_z+G`, `dip`, `dip_best` (an
oracle: DIP's best PSNR over its evaluations, which reads the clean image), `dps_1` (one
diffusion posterior sample) and `dps` (the mean of `dps_samples` posterior samples, an estimate
of the posterior mean). Every column but `dps` is a single estimate per digit.

Paired differences: per group and task, each method's PSNR minus that of the best other column
(the highest mean among the reference columns other than the method itself), digit by digit,
with a 95% paired bootstrap interval over digits (jgen/studies/effects.py paired_difference).
Two reference sets: every non-oracle column but `input`; and the same without `dps`, so that
each method also meets the best single estimate.
"""

from jgen.studies import effects

METHODS = ("input", "dgn_z", "dgn_z+G", "dip", "dip_best", "dps_1", "dps")
ORACLES = ("dip_best",)  # reads the clean image: never a reference
REFERENCES = ("dgn_z", "dgn_z+G", "dip", "dps_1", "dps")  # the best other column comes from these
SINGLE_REFERENCES = tuple(m for m in REFERENCES if m != "dps")  # ... single estimates only
RESAMPLES = 10_000
SEED = 0


def best_other(means: dict, method: str, references=REFERENCES) -> str:
  """The reference column with the highest mean PSNR, `method` itself left out (ties: the
  first in `references`)."""
  others = [m for m in references if m != method]
  return max(others, key=lambda m: (means[m], -others.index(m)))


def paired_comparisons(
  per_digit: dict, means: dict, references=REFERENCES, resamples=RESAMPLES, seed=SEED
) -> dict:
  """{method: {"against", "difference", "interval", ...}} for every method but `input`: its
  per-digit PSNR minus the best other reference column's (paired over digits)."""
  out = {}
  for method in METHODS:
    if method == "input":
      continue
    against = best_other(means, method, references)
    result = effects.paired_difference(per_digit[method], per_digit[against], resamples, seed)
    out[method] = {"against": against, **result}
  return out


def report(finished) -> dict:
  """{"psnr": {"<group>/<task>": {method: mean}}, "paired": {...}, "paired_single": {...}}
  from the finished cells' outcomes ({"cell", "psnr", "psnr_per_digit"})."""
  psnr, paired, single = {}, {}, {}
  for cell, outcome in finished:
    name = f"{cell['group']}/{cell['task']}"
    psnr[name] = outcome["psnr"]
    paired[name] = paired_comparisons(outcome["psnr_per_digit"], outcome["psnr"])
    single[name] = paired_comparisons(
      outcome["psnr_per_digit"], outcome["psnr"], references=SINGLE_REFERENCES
    )
  return {"psnr": psnr, "paired": paired, "paired_single": single}


def _heading(method: str) -> str:
  return f"{method} (oracle)" if method in ORACLES else method


def _paired_table(comparisons: dict) -> list[str]:
  lines = [
    "| group/task | method | against | difference (dB) | 95% interval | excludes 0 |",
    "|---|---|---|---|---|---|",
  ]
  for name, rows in comparisons.items():
    for method, row in rows.items():
      low, high = row["interval"]
      excludes = "yes" if low > 0 or high < 0 else "no"
      lines.append(
        f"| {name} | {_heading(method)} | {row['against']} | {row['difference']:+.2f} | "
        f"[{low:+.2f}, {high:+.2f}] | {excludes} |"
      )
  return lines


def table_markdown(results: dict, config) -> str:
  """The report of `report(finished)` as markdown."""
  lines = [
    "# Inverse problems on 8x8 digits: DGN prior vs Deep Image Prior vs a denoising prior",
    "",
    f"Mean PSNR (dB) over {config.num_images} digits per group. DGN prior: "
    f"{config.prior.data.num_train} training digits, z_dim {config.prior.model.z_dim}. "
    f"denoise sigma {config.noise_std:.3f}, inpaint keeps {config.keep_fraction:.0%} of pixels, "
    f"superres {config.factor}x. dip_best is an oracle early stop (it reads the clean image). "
    f"dps_1 and dps: diffusion posterior sampling (Chung et al. 2023) with a noise predictor "
    f"trained on the same {config.denoise_prior.data.num_train} digits, {config.dps_steps} "
    f"steps; dps_1 is one posterior sample (a single estimate, like every other column), dps "
    f"the mean of {config.dps_samples} samples (an estimate of the posterior mean, which PSNR "
    f"rewards), dps_1 being the first of them.",
    "",
    "| group/task | " + " | ".join(map(_heading, METHODS)) + " |",
    "|---|" + "---|" * len(METHODS),
  ]
  for name, row in results["psnr"].items():
    lines.append(f"| {name} | " + " | ".join(f"{row[m]:.2f}" for m in METHODS) + " |")
  lines += [
    "",
    "## Paired differences against the best other column",
    "",
    f"Each method's PSNR minus that of the best other column (highest mean among "
    f"{', '.join(REFERENCES)}; never input or the oracle), digit by digit, averaged over the "
    f"{config.num_images} digits of the group; a 95% paired percentile bootstrap interval "
    f"({RESAMPLES:,} resamples of the digits, seed {SEED}). The best column's own row is against "
    f"the second best.",
    "",
    *_paired_table(results["paired"]),
    "",
    "## Paired differences against the best other single estimate",
    "",
    f"As above, the reference chosen among {', '.join(SINGLE_REFERENCES)} (dps, the mean of "
    f"several samples, left out).",
    "",
    *_paired_table(results["paired_single"]),
  ]
  return "\n".join(lines) + "\n"
