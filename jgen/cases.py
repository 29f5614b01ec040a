r"""Lists a run's collapse cases.

  python -m jgen.cases --workdir=runs/collapse_demo [--json]

Each case is a folder WORKDIR/cases/ID/ recorded while the run trained
(jgen/collapse/recorder.py); `python -m jgen.replay --case=WORKDIR/cases/ID` replays one.
"""

import json
import os
import sys

from absl import flags

from jgen.collapse import recorder
from jgen.core import cli


def define_flags() -> None:
  cli.define_workdir("A run's directory.")
  flags.DEFINE_bool("json", False, "One JSON object per case instead of a table.")


def main() -> None:
  work_dir = flags.FLAGS.workdir
  if not os.path.isdir(work_dir):
    cli.fail(f"--workdir {work_dir} is not a directory (a run's --workdir holds its cases/)")
  damaged = []
  cases = [recorder.summary(case) for case in recorder.list_cases(work_dir, damaged)]
  for text in damaged:
    print(f"jgen.cases: warning: {text}", file=sys.stderr)
  if flags.FLAGS.json:
    for case in cases:
      print(json.dumps(case))
    return
  if not cases:
    print(f"no cases in {work_dir}")
    return
  try:
    for case in cases:
      start, trigger, end = case["steps"]
      print(f"{case['id']}  [{case['status']}]  steps {start} -> {trigger} -> {end}")
      for text in case["triggers"]:
        print(f"    trigger   {text}")
      print(f"    before    {case['before']}")
      print(f"    after     {case['after']}")
      print(
        f"    replay    python -m jgen.replay --case={os.path.join(work_dir, 'cases', case['id'])}"
      )
  except BrokenPipeError:  # `... | head` closed the pipe: the reader has what it wanted
    sys.stderr.close()


if __name__ == "__main__":
  cli.run(main, define_flags, quiet=True)
