"""JSON Lines files: one JSON object per line (metrics.jsonl, trace.jsonl, cases)."""

import json
import os


def read_rows(path: str | os.PathLike) -> list[dict]:
  """Every row of a JSONL file, in order; blank lines (a trailing newline) are skipped."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_rows(path: str | os.PathLike, rows, *, append: bool = False) -> None:
  """Writes (or appends) one line per row."""
  with open(path, "a" if append else "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
