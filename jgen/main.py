r"""Trains the experiment a config describes.

  python -m jgen.main --config=configs/gan_setd.py --workdir=runs/gan_setd
  python -m jgen.main --config=configs/gan.py:data=grid25 --config.seed=3 --workdir=runs/x

Rerunning the same command resumes from the latest checkpoint in --workdir. Progress goes to
stderr; the final row, one JSON object, to stdout. SIGTERM or Ctrl-C saves a checkpoint after
the current chunk and exits with code 75; rerunning resumes from it.

Several processes (one run): `--multihost` joins them with jax.distributed, finding the others
on TPU pods and under Slurm; elsewhere name them with --coordinator_address, --num_processes
and --process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), as
launch/local_processes.sh does for N processes on one machine.
"""

import json
import os
import sys

import jax
import numpy as np
from absl import flags

from jgen import trainers
from jgen.core import cli, parallel


def define_flags() -> None:
  cli.define_config("Experiment config file.")
  cli.define_workdir("Directory for checkpoints, metrics, plots.")
  flags.DEFINE_bool(
    "multihost", False, "Join the other processes first (jax.distributed): TPU pods, multi-node."
  )
  flags.DEFINE_string(
    "coordinator_address",
    os.environ.get("JAX_COORDINATOR_ADDRESS"),
    "host:port of process 0's coordinator (implies --multihost; env JAX_COORDINATOR_ADDRESS).",
  )
  flags.DEFINE_integer(
    "num_processes",
    _env_int("JAX_NUM_PROCESSES"),
    "How many processes the run has (with --coordinator_address; env JAX_NUM_PROCESSES).",
  )
  flags.DEFINE_integer(
    "process_id",
    _env_int("JAX_PROCESS_ID"),
    "This process's index, 0..num_processes-1 (env JAX_PROCESS_ID).",
  )


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value not in (None, "") else None


def _join_processes(args) -> None:
  explicit = (args.coordinator_address, args.num_processes, args.process_id)
  if not args.multihost and all(value is None for value in explicit):
    return
  if any(value is not None for value in explicit) and None in explicit:
    cli.fail(
      "--coordinator_address, --num_processes and --process_id go together (or set "
      "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID); leave all three out for "
      "--multihost to find the processes on a TPU pod or under Slurm"
    )
  # CPU processes exchange collectives through gloo (their default has none across processes);
  # accelerators use their own, so this changes nothing there.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=args.coordinator_address,
    num_processes=args.num_processes,
    process_id=args.process_id,
  )


def main() -> None:
  args = flags.FLAGS
  config = args.config
  if os.path.exists(args.workdir) and not os.path.isdir(args.workdir):
    cli.fail(f"--workdir {args.workdir} is an existing file, not a directory: pass a folder")
  if config.get("deterministic", False):
    parallel.enable_gpu_determinism()  # before the first JAX computation starts a backend
  _join_processes(args)
  trainer = trainers.get_trainer(config.trainer)
  row = trainer.train_and_evaluate(config, args.workdir)
  verdict = population_verdict(row)
  if verdict:
    print(verdict, file=sys.stderr, flush=True)
  # Every process prints the final row: the same row, which shows that they agree.
  print(json.dumps(row))


def population_verdict(row: dict) -> str | None:
  """One line summing up a population's final row, which holds a list per metric."""
  members = row.get("member_digests")
  if not isinstance(members, list):
    return None
  text = f"population of {len(members)} members at step {row.get('step')}"
  modes = row.get("modes")
  if isinstance(modes, list) and modes:
    counts = np.asarray(modes)
    per_mode = row.get("mode_counts")
    total = len(per_mode[0]) if isinstance(per_mode, list) and per_mode else None
    of = f"/{total}" if total else ""
    full = (
      f"; all {total} modes in {int((counts == total).sum())} of {len(counts)}" if total else ""
    )
    text += (
      f": modes per member min {counts.min()}{of}, median {np.median(counts):g}, "
      f"max {counts.max()}{of}{full}"
    )
  return text + " (the final row follows as JSON)"


if __name__ == "__main__":
  cli.run(main, define_flags)
