"""JSON Lines files: one JSON object per line (metrics.jsonl, trace/parts.jsonl, cases).

Rows are appended while a run trains. A crash or a full disk can leave half a row at the end
of a file: `read_rows` drops it with a warning naming the file (every later resume would
otherwise fail on it). A damaged row elsewhere is an error naming the file and line. Rewrites
(dropping rows past a resume point) go through `replace_rows`: a temporary file in the same
folder, flushed to disk, then renamed over the old one, so a kill at any moment leaves either
the old file or the new one, never a truncated mix.
"""

import json
import os
import tempfile

from absl import logging


def _parse(path, text: str) -> tuple[list[dict], bool]:
  """(rows, whether a partial last line was dropped)."""
  lines = text.split("\n")
  # After the last "\n" comes either nothing or a line whose write never finished.
  complete, tail = lines[:-1], lines[-1]
  rows = []
  for number, line in enumerate(complete, 1):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as error:
      raise ValueError(
        f"{path}, line {number}, is not a JSON row ({error.msg}); the file is damaged beyond "
        "its last line: restore it from a backup or delete it"
      ) from None
  if not tail.strip():
    return rows, False
  try:
    rows.append(json.loads(tail))  # a whole row whose newline was not written yet
    return rows, True
  except json.JSONDecodeError:
    logging.warning(
      "%s: dropped a partial last line (%d bytes) left by an interrupted write.", path, len(tail)
    )
    return rows, True


def read_rows(path: str | os.PathLike) -> list[dict]:
  """Every complete row of a JSONL file, in order; a partial last line is dropped (warned)."""
  with open(path) as f:
    return _parse(path, f.read())[0]


def keep_rows(path: str | os.PathLike, keep) -> list[dict]:
  """Rewrites `path` (atomically) to the rows for which keep(row) holds, and ends it with a
  complete line; returns those rows. Nothing is written when nothing changes."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows, repaired = _parse(path, f.read())
  kept = [row for row in rows if keep(row)]
  if repaired or len(kept) != len(rows):
    replace_rows(path, kept)
  return kept


def replace_rows(path: str | os.PathLike, rows) -> None:
  """Writes `rows` to `path` through a temporary file and a rename (atomic)."""
  replace_bytes(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def replace_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Replaces `path` by `data` atomically: a temporary file in the same folder, flushed to disk,
  then renamed over it. A kill at any moment leaves the old contents or the new, whole."""
  folder = os.path.dirname(os.path.abspath(path))
  fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.unlink(temporary)
    raise


def write_rows(path: str | os.PathLike, rows, *, append: bool = False) -> None:
  """Appends one line per row, or (append=False) replaces the file atomically."""
  if not append:
    replace_rows(path, rows)
    return
  with open(path, "a") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
