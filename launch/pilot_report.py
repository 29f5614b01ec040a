"""Summarises the sampling-order pilot (launch/pilot_sampling_order.sh) as a markdown table.

Per population (N, optimizer, width) and learning-rate variant: the fraction of the 8 pilot
seeds missing a mode at the end (the collapse rate), and the mean modes over the last five
evaluations, at 5k, 10k and 20k steps, so the operating point (baseline collapse 35-65%) can
be read off, with its length.

  python launch/pilot_report.py runs/pilot_order
"""

import json
import pathlib
import sys

import numpy as np

LENGTHS = (5000, 10000, 20000)
LAST = 5  # evaluations averaged in the continuous endpoint


def summarise(run_dir: pathlib.Path) -> list[dict]:
  config = json.loads((run_dir / "config.json").read_text())
  rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
  evaluations = [row for row in rows if "modes" in row]
  rates = config["population"]["variants"].split("=", 1)[1].split("|")
  per_variant = config["population"]["size"] // len(rates)
  out = []
  for v, rate in enumerate(rates):
    members = slice(v * per_variant, (v + 1) * per_variant)
    entry = {"run": run_dir.name, "learning_rate": rate, "seeds": per_variant}
    for length in LENGTHS:
      upto = [row for row in evaluations if row["step"] <= length]
      if not upto or upto[-1]["step"] != length:
        continue
      final = np.asarray(upto[-1]["modes"][members])
      recent = np.asarray([row["modes"][members] for row in upto[-LAST:]]).mean(axis=0)
      entry[length] = {
        "collapse_rate": float(np.mean(final < 8)),
        "mean_modes": float(recent.mean()),
      }
    out.append(entry)
  return out


def main(root: str) -> None:
  print(
    "| run | lr | "
    + " | ".join(f"collapsed @{n // 1000}k, modes(last {LAST})" for n in LENGTHS)
    + " |"
  )
  print("|---|---|" + "---|" * len(LENGTHS))
  for run_dir in sorted(pathlib.Path(root).iterdir()):
    if not (run_dir / "metrics.jsonl").exists():
      continue
    for entry in summarise(run_dir):
      cells = [
        f"{entry[n]['collapse_rate']:.2f}, {entry[n]['mean_modes']:.1f}" if n in entry else "–"
        for n in LENGTHS
      ]
      print(f"| {entry['run']} | {entry['learning_rate']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main(sys.argv[1])
