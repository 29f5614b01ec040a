r"""Replays a collapse case bit for bit, or branches from it with another config.

  python -m jgen.replay --case=runs/demo/cases/ID            # verify every digest
  python -m jgen.replay --case=runs/demo/cases/first         # the run's first case (or latest)
  python -m jgen.replay --case=runs/demo/cases/ID --dump     # + per-step metrics, frames
  python -m jgen.replay --case=runs/demo/cases/ID \\
      --override=config.sampler.kind=with_replacement        # counterfactual (repeatable)

Prints `verified N steps` and exits 0, or names the first step and part that differ and
exits 1. A case recorded on another platform or with other library versions is refused
(exit 2) unless --allow_mismatch, which reports the first divergence instead of failing.
The library is jgen/replays/.
"""

import difflib
import os
import re

from absl import flags

from jgen.collapse import recorder
from jgen.core import cli, parallel
from jgen.core import config as config_lib
from jgen.replays import counterfactual, replay
from jgen.run import workdir


def define_flags() -> None:
  flags.DEFINE_string(
    "case",
    None,
    "A case directory, WORKDIR/cases/ID; WORKDIR/cases/first or WORKDIR/cases/latest names the "
    "run's first or latest case.",
    required=True,
  )
  flags.DEFINE_bool("dump", False, "Write per-step metrics and sample frames.")
  flags.DEFINE_multi_string(
    "override", [], "config.a.b=value for a counterfactual branch (repeatable)."
  )
  flags.DEFINE_bool(
    "allow_mismatch", False, "Replay a case from another platform or versions anyway."
  )
  flags.DEFINE_string("out", None, "Output folder (default: inside the case).")


def main() -> int:
  args = flags.FLAGS
  case = recorder.load_case(replay.resolve_case(args.case))
  if case["status"] != "complete":
    cli.fail(
      f"case {case['id']} is still {case['status']}: its run has not reached step "
      f"{case['end_step']} yet"
    )
  if case["config"].get("deterministic"):
    parallel.enable_gpu_determinism()
  problems = replay.environment_mismatches(case["environment"])
  if problems and not args.allow_mismatch:
    cli.fail(
      "the case was recorded elsewhere, so a bit-for-bit replay is not expected to hold:\n  "
      + "\n  ".join(problems)
      + "\nPass --allow_mismatch to replay anyway and report the first divergence.",
      code=2,
    )
  _check_overrides(case, args.override)
  slug = re.sub(r"[^\w.=-]+", "_", "+".join(args.override))[:80]
  out_dir = args.out or os.path.join(
    case["dir"], f"counterfactual-{slug}" if args.override else "replay"
  )
  try:
    if args.override:
      report = counterfactual.counterfactual(case, args.override, out_dir)
      print(counterfactual.counterfactual_text(report, out_dir))
      return 0
    steps = replay.verify(case, dump_dir=out_dir if args.dump else None)
  except replay.ReplayMismatch as error:
    if problems:
      print(f"first divergence (recorded elsewhere: {'; '.join(problems)}): {error}")
      return 0
    cli.fail(str(error))
  print(f"verified {steps} steps ({case['start_step']} -> {case['end_step']})")
  if args.dump:
    print(f"per-step metrics and frames in {out_dir}")
  return 0


def _check_overrides(case: dict, overrides: list[str]) -> None:
  """Every override names a key of the case's config, before anything runs (did you mean?)."""
  config = recorder.case_config(case)
  keys = sorted(workdir.flatten(config.to_dict()))
  for override in overrides:
    try:
      config_lib.apply_override(config, override)
    except ValueError as error:
      path = override.partition("=")[0].removeprefix("config.")
      close = difflib.get_close_matches(path, keys, n=1)
      hint = f" Did you mean config.{close[0]}?" if close and path not in keys else ""
      cli.fail(f"--override: {error}.{hint}")


if __name__ == "__main__":
  cli.run(main, define_flags)
