r"""Reconstruct-then-interpolate against the GANs and the flow: one table on the same digits,
the same budget and one scoring function (configs/study_generators.py).

  python -m jgen.study --config=configs/study_generators.py --workdir=runs/generators
  python -m jgen.study --config=configs/study_generators.py:stacked --workdir=runs/generators_sd

A cell is one family at one seed: an ordinary run under W/cells/<family>-s<seed>/ (a finished
cell is never rerun; an interrupted one resumes). After training, each of the cell's generators
draws `study.num_samples` samples through the trainer's `sample(state, key, n)` (the DGN once
per code prior, with eval.sample_prior set) and `score` turns them into one row. The report
(W/report.md, report.json, samples.png: a row of samples per generator) gives per row the
mean over seeds with a 95% t-interval, the seeds, the steps and the wall time of training; two
reference rows score real images the same way: the training images replayed (what a generator
that copies its training set gets) and real images no run trained on (single digits: the
held-out digits themselves; stacked digits: fresh triples, what a perfect generator gets).

`study.data` picks the data: `digits` (the first `study.num_train` single digits, the same for
every seed) or `stacked_digits` (each seed's 128,000 triples, as the stacked-digit configs
draw them). The memorization rate is measured on the first `study.memorization_samples`
samples against the cell's own training images; the training set's spacing is computed once
per training set (minutes for 128,000 triples) and shared by every row that trained on it.
"""

import functools
import io
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jgen.core import jsonl, registry
from jgen.data import digits
from jgen.datasets import images as image_datasets
from jgen.evals import memorization
from jgen.run import checkpoints
from jgen.studies import runner
from jgen.trainers import get_trainer
from jgen.viz import imgrid

REPORT_FILE = "report.md"
RESUMABLE_CHANGES = ("study.families", "study.priors", "study.seeds", "eval")
DATA = ("digits", "stacked_digits")
# A key no run and no evaluation reference draws from: the fresh stacked-digit triples that
# score as "a perfect generator" (the evaluation's own reference is REFERENCE_SEED's EVAL fold).
FRESH_TRIPLES_SEED = 7919
# The DGN's own end-of-run sample metrics (nearest training image of every sample): bounded,
# since the table scores its samples itself.
DGN_OWN_METRIC_SAMPLES = 2000
OUTCOME_KEYS = ("rows", "seconds", "steps")
FAMILIES = ("per_sample_gan", "set_gan", "flow_matching", "dgn")
COLUMNS = (  # (row key, header, digits)
  ("classifier_fid", "classifier FD to held-out", 1),
  ("classifier_precision", "precision", 2),
  ("classifier_recall", "recall", 2),
  ("classifier_density", "density", 2),
  ("classifier_coverage", "coverage", 2),
  ("modes", "modes", 1),
  ("reverse_kl", "reverse KL", 3),
  ("memorization_rate", "memorization rate", 3),
)
# Two-sided 95% Student t quantiles by degrees of freedom (seeds - 1); past 19, 2.0 (t at 20
# degrees is 2.086, at 60 2.000: at most 4% narrower), not the normal's 1.96.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
       10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
       18: 2.101, 19: 2.093}  # fmt: skip


def cells(config) -> list[dict]:
  families = runner.axis(config, "study.families", FAMILIES)
  seeds = runner.axis(config, "study.seeds", number=int)
  # The DGN's cells first (minutes each on a CPU, against tens for the others), then
  # seed-major: a stopped study has whole tables over its first seeds, not whole families.
  grid = [{"name": f"{f}-s{s}", "family": f, "seed": s} for s in seeds for f in families]
  return sorted(grid, key=lambda cell: cell["family"] != "dgn")


def steps(config) -> int:
  """The training steps of every family: study.epochs passes over the training images."""
  return math.ceil(config.study.epochs * config.study.num_train / config.study.batch_size)


def cell_config(config, cell: dict) -> ml_collections.ConfigDict:
  num_steps = steps(config)
  every = min(num_steps, 2500)
  settings = {
    "seed": cell["seed"],
    "data.name": data_name(config),
    "data.num_train": config.study.num_train,
    "train.batch_size": config.study.batch_size,
    "train.num_steps": num_steps,
    "train.log_every": every,
    "train.eval_every": num_steps,
    "train.checkpoint_every": every,
    "eval.num_samples": config.study.num_samples,
  }
  if cell["family"] == "dgn":
    settings |= {
      "model.architecture": "mlp",
      "model.width": config.study.dgn_width,
      "model.z_dim": config.study.dgn_z_dim,
      "eval.priors": config.study.priors,
      # The held-out single digits are the reference of the DGN's own memorization rate.
      "eval.held_out_metrics": data_name(config) == "digits",
      "eval.num_samples": min(config.study.num_samples, DGN_OWN_METRIC_SAMPLES),
      "code_flow.train.num_steps": config.study.code_flow_steps,
    }
  else:
    settings["train.steps_per_dispatch"] = min(250, every)
  return runner.cell_config(config.bases[cell["family"]], settings)


def data_name(config) -> str:
  name = config.study.get("data", "digits")
  return registry.choose("study.data", name, {choice: choice for choice in DATA})


@functools.lru_cache(maxsize=2)
def dataset(name: str):
  return image_datasets.image_dataset(name, None)


def training_spacing(name: str, num_train: int, seed: int) -> memorization.TrainingSpacing:
  """The spacing of the training set a run of `seed` trains on, computed once per set."""
  seed = seed if name == "stacked_digits" else 0  # single digits: one set for every seed
  return _spacing_of_set(name, num_train, seed)


@functools.lru_cache(maxsize=4)  # one per training set: every row that trained on it shares it
def _spacing_of_set(name: str, num_train: int, seed: int) -> memorization.TrainingSpacing:
  return memorization.TrainingSpacing(image_datasets.training_images(name, num_train, seed))


def cell_spacing(config, seed: int) -> memorization.TrainingSpacing:
  return training_spacing(data_name(config), config.study.num_train, seed)


def score(samples, spacing, data, eval_config, memorization_samples: int) -> dict:
  """The table's one row for any generator's samples: the dataset's image metrics against its
  real reference (held-out digits, or fresh triples) and the memorization rate of the first
  `memorization_samples` samples against the training images (`spacing`)."""
  samples = np.clip(np.asarray(samples, np.float32), 0.0, 1.0)
  row = data.evaluate(samples, eval_config)
  rate = spacing.rate(samples[:memorization_samples])
  return {key: row[key] for key, _, _ in COLUMNS[:-1]} | {"memorization_rate": rate["rate"]}


def memorization_samples(config) -> int:
  return config.study.get("memorization_samples", config.study.num_samples)


def generators(cell: dict, config) -> list[tuple[str, dict]]:
  """(row name, config overrides of the sample call) of each generator a cell trains."""
  if cell["family"] != "dgn":
    return [(cell["family"], {})]
  priors = runner.axis(config, "study.priors", ("gaussian", "gmm", "knn", "slerp", "flow"))
  return [(f"dgn_{prior}", {"eval.sample_prior": prior}) for prior in priors]


def _sample(run_config, cell_dir: str, overrides: dict, num_samples: int) -> np.ndarray:
  """`num_samples` samples of the finished run in cell_dir through its trainer's `sample`."""
  if overrides.get("eval.sample_prior") == "flow":
    overrides = {**overrides, "eval.code_flow_dir": os.path.join(cell_dir, "code_flow")}
  run_config = runner.cell_config(run_config, overrides)
  trainer, root, _ = get_trainer(run_config.trainer).build(run_config)
  state, _, _ = checkpoints.restore_newest_intact(
    cell_dir, run_config.train.keep_checkpoints, trainer.init_state(root)
  )
  return np.asarray(trainer.sample(state, root, num_samples))


def train_cell(config, cell: dict, run_config, cell_dir: str) -> dict:
  started = time.perf_counter()
  final = runner.train(run_config, cell_dir)
  seconds = time.perf_counter() - started
  data = dataset(data_name(config))
  spacing = cell_spacing(config, cell["seed"])
  rows = {}
  for name, overrides in generators(cell, config):
    samples = _sample(run_config, cell_dir, overrides, config.study.num_samples)
    rows[name] = score(samples, spacing, data, config.eval, memorization_samples(config))
    imgrid.save_grid(
      os.path.join(cell_dir, f"samples_{name}.png"),
      [list(samples[r * 16 : (r + 1) * 16]) for r in range(min(4, len(samples) // 16))],
      title=f"{name}, seed {cell['seed']}",
    )
  outcome = {"rows": rows, "seconds": seconds, "steps": run_config.train.num_steps}
  if cell["family"] == "dgn":
    outcome["exact_fraction"] = final["exact_fraction"]
    outcome["recon_psnr_min"] = final["recon_psnr_min"]
  return outcome


def unseen_images(config, num: int) -> tuple[str, np.ndarray]:
  """(name, images) of real images no run trained on: the held-out single digits (all 297,
  whatever `num`), or `num` fresh stacked-digit triples."""
  data = dataset(data_name(config))
  if data_name(config) == "digits":
    return "held-out digits", data.source.reference_images(digits.NUM_CLASSES * 1000)
  fresh = data.source.training_set(jax.random.key(FRESH_TRIPLES_SEED), num)
  return "fresh triples", np.asarray(data.source.gather(fresh, jnp.arange(num)))


def reference_rows(config) -> dict:
  """Real images scored as a generator: the first seed's training images replayed, and images
  no run trained on."""
  data = dataset(data_name(config))
  first_seed = runner.axis(config, "study.seeds", number=int)[0]
  spacing = cell_spacing(config, first_seed)
  train_images = image_datasets.training_images(
    data_name(config), config.study.num_train, first_seed
  )
  picks = np.random.default_rng(0).integers(0, len(train_images), config.study.num_samples)
  unseen_name, unseen = unseen_images(config, config.study.num_samples)
  kind = "digits" if data_name(config) == "digits" else "triples"
  count = memorization_samples(config)
  return {
    f"training {kind} replayed": score(train_images[picks], spacing, data, config.eval, count),
    unseen_name: score(unseen, spacing, data, config.eval, count),
  }


def interval(values: list[float]) -> dict:
  """Mean and 95% t-interval half-width over seeds (None with fewer than two)."""
  values = [float(v) for v in values if v is not None]
  mean = float(np.mean(values)) if values else None
  if len(values) < 2:
    return {"mean": mean, "half_width": None, "n": len(values)}
  half = T95.get(len(values) - 1, 2.0) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
  return {"mean": mean, "half_width": half, "n": len(values)}


def report(config, finished: list[tuple[dict, dict]], reference: dict | None = None) -> dict:
  """The table over the finished cells; `reference` is reference_rows(config), computed here
  when not given (a study computes it once: it does not depend on the cells)."""
  by_row = {}
  for cell, outcome in finished:
    for name, row in outcome["rows"].items():
      entry = by_row.setdefault(name, {"seeds": [], "runs": [], "seconds": [], "steps": None})
      entry["seeds"].append(cell["seed"])
      entry["runs"].append(row | {k: outcome[k] for k in ("exact_fraction",) if k in outcome})
      entry["seconds"].append(outcome["seconds"])
      entry["steps"] = outcome["steps"]
  rows = {}
  for name, entry in by_row.items():
    summary = {key: interval([r[key] for r in entry["runs"]]) for key, _, _ in COLUMNS}
    if "exact_fraction" in entry["runs"][0]:
      summary["exact_fraction"] = interval([r["exact_fraction"] for r in entry["runs"]])
    rows[name] = {
      "metrics": summary,
      "seeds": entry["seeds"],
      "steps": entry["steps"],
      "train_seconds_mean": float(np.mean(entry["seconds"])),
      "runs": entry["runs"],
    }
  return {
    "data": data_name(config),
    "num_modes": dataset(data_name(config)).num_modes,
    "num_train": config.study.num_train,
    "epochs": config.study.epochs,
    "batch_size": config.study.batch_size,
    "num_samples": config.study.num_samples,
    "memorization_samples": memorization_samples(config),
    "rows": rows,
    "reference": reference_rows(config) if reference is None else reference,
  }


def _cell(summary: dict, digits_after: int) -> str:
  if summary["mean"] is None:
    return "-"
  if summary["half_width"] is None:
    return f"{summary['mean']:.{digits_after}f}"
  return f"{summary['mean']:.{digits_after}f} ± {summary['half_width']:.{digits_after}f}"


def report_markdown(result: dict) -> str:
  num_modes = result.get("num_modes", digits.NUM_CLASSES)
  single = result.get("data", "digits") == "digits"
  renamed = {"modes": f"modes of {num_modes}"}
  if not single:
    renamed["classifier_fid"] = "classifier FD to reference triples"
  headers = [renamed.get(key, header) for key, header, _ in COLUMNS]
  if single:
    title = "single digits"
    data_text = (
      f"the first {result['num_train']} digits for {result['epochs']} passes at batch "
      f"{result['batch_size']}; every row is scored on {result['num_samples']} samples against "
      "the held-out digits 1500..1796"
    )
  else:
    title = "stacked digits, 1,000 modes"
    data_text = (
      f"its seed's {result['num_train']:,} stacked-digit triples for {result['epochs']} passes "
      f"at batch {result['batch_size']} (the stacked-digit configs' budget); every row is scored "
      f"on {result['num_samples']:,} samples against fresh triples (the evaluation's reference), "
      f"the memorization rate on the first {result.get('memorization_samples')} against the "
      "cell's training triples"
    )
  lines = [
    f"# Reconstruct-then-interpolate against the GANs and the flow ({title})",
    "",
    f"Every family trains on {data_text}. Mean ± 95% t-interval over seeds; wall time is "
    "training on the machine that ran the study.",
    "",
    "| generator | " + " | ".join(headers) + " | seeds | steps | train s |",
    "|---" * (len(headers) + 4) + "|",
  ]
  for name, row in result["rows"].items():
    cells = [_cell(row["metrics"][key], d) for key, _, d in COLUMNS]
    seeds = ",".join(str(s) for s in row["seeds"])
    lines.append(
      f"| {name} | " + " | ".join(cells) + f" | {seeds} | {row['steps']} | "
      f"{row['train_seconds_mean']:.0f} |"
    )
  for name, row in result["reference"].items():
    cells = [f"{row[key]:.{d}f}" if row[key] is not None else "-" for key, _, d in COLUMNS]
    lines.append(f"| *{name}* | " + " | ".join(cells) + " | - | - | - |")
  dgn_rows = [r for r in result["rows"].values() if "exact_fraction" in r["metrics"]]
  if dgn_rows:
    lines += ["", f"The DGN restored {_cell(dgn_rows[0]['metrics']['exact_fraction'], 3)} of "
              "its training images exactly (>= 40 dB)."]  # fmt: skip
  return "\n".join(lines) + "\n"


def row_samples(config, work_dir: str, cell: dict, name: str, count: int = 16) -> np.ndarray:
  """`count` samples of row `name` from the finished cell's checkpoint, kept beside it in
  samples_<name>.npy so that the report draws them once (written atomically; a damaged file,
  from a copy or an older version, is drawn again)."""
  cell_dir = os.path.join(work_dir, "cells", cell["name"])
  path = os.path.join(cell_dir, f"samples_{name}.npy")
  if os.path.exists(path):
    try:
      return np.load(path)
    except (ValueError, EOFError, OSError) as error:
      logging.warning("%s is damaged (%s); drawing its samples again.", path, error)
  overrides = dict(generators(cell, config))[name]
  samples = np.clip(_sample(cell_config(config, cell), cell_dir, overrides, count), 0.0, 1.0)
  buffer = io.BytesIO()
  np.save(buffer, samples.astype(np.float32))
  jsonl.replace_bytes(path, buffer.getvalue())
  return samples.astype(np.float32)


def samples_picture(path: str, config, work_dir: str, finished) -> None:
  """One row of samples per generator (its first seed), the reference digits last."""
  firsts = {}
  for cell, outcome in finished:
    for name in outcome["rows"]:
      firsts.setdefault(name, cell)
  names = list(firsts)
  rows = [list(row_samples(config, work_dir, firsts[name], name)) for name in names]
  first_seed = runner.axis(config, "study.seeds", number=int)[0]
  train_images = image_datasets.training_images(
    data_name(config), config.study.num_train, first_seed
  )[:16]
  unseen_name, unseen = unseen_images(config, 16)
  rows += [list(train_images), list(unseen[:16])]
  names += ["training images", unseen_name]
  imgrid.save_grid(path, rows, names, "16 samples per generator (its first seed)")


def write_report(config, work_dir: str, finished, reference: dict | None = None) -> dict:
  result = report(config, finished, reference)
  runner.save_report(work_dir, result, report_markdown(result), REPORT_FILE)
  samples_picture(os.path.join(work_dir, "samples.png"), config, work_dir, finished)
  return result


def run_study(config, work_dir: str) -> dict:
  grid = cells(config)
  configs = [cell_config(config, cell) for cell in grid]
  # The reference rows score 2 x study.num_samples real images (minutes on stacked digits) and
  # depend on no cell: once per study, not after every cell.
  reference = functools.cache(lambda: reference_rows(config))

  return runner.run_cells(
    work_dir,
    grid,
    configs,
    lambda cell, run_config, cell_dir: train_cell(config, cell, run_config, cell_dir),
    lambda finished: write_report(config, work_dir, finished, reference()),
    "Generator table",
    study_config=config,
    resumable=RESUMABLE_CHANGES,
    outcome_keys=OUTCOME_KEYS,
  )
