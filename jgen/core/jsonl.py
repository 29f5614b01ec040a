"""JSON Lines files: one JSON object per line (metrics.jsonl, trace/parts.jsonl, cases).

Rows are appended while a run trains. A crash or a full disk can leave half a row at the end
of a file: `read_rows` drops it with a warning naming the file (every later resume would
otherwise fail on it). A damaged row elsewhere (not JSON, or not UTF-8 text) is an error naming
the file and line. Rewrites (dropping rows past a resume point) go through `replace_rows`: a
temporary file in the same folder, flushed to disk, then renamed over the old one, so a kill at
any moment leaves either the old file or the new one, never a truncated mix; a run removes the
temporary files such a kill left (`remove_stale_temporaries`).
"""

import contextlib
import json
import os
import re
import tempfile

from absl import logging


def _damaged_line(path, number: int, why: str) -> ValueError:
  return ValueError(
    f"{path}, line {number}, is not a JSON row ({why}); the file is damaged beyond its last "
    "line, and its other rows are intact: repair or remove that line (or restore the file from "
    "a backup), then rerun"
  )


def _parse(path, data: bytes) -> tuple[list[dict], bool]:
  """(rows, whether a partial last line was dropped)."""
  lines = data.split(b"\n")
  # After the last "\n" comes either nothing or a line whose write never finished.
  complete, tail = lines[:-1], lines[-1]
  rows = []
  for number, line in enumerate(complete, 1):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line.decode("utf-8")))
    except UnicodeDecodeError as error:
      byte = line[error.start]
      raise _damaged_line(
        path, number, f"not UTF-8 text: byte {byte:#04x} at column {error.start + 1}"
      ) from None
    except json.JSONDecodeError as error:
      raise _damaged_line(path, number, error.msg) from None
  if not tail.strip():
    return rows, False
  try:
    rows.append(json.loads(tail.decode("utf-8")))  # a whole row whose newline was not written yet
    return rows, True
  except (UnicodeDecodeError, json.JSONDecodeError):
    logging.warning(
      "%s: dropped a partial last line (%d bytes) left by an interrupted write.", path, len(tail)
    )
    return rows, True


def read_rows(path: str | os.PathLike) -> list[dict]:
  """Every complete row of a JSONL file, in order; a partial last line is dropped (warned)."""
  with open(path, "rb") as f:
    return _parse(path, f.read())[0]


def keep_rows(path: str | os.PathLike, keep) -> list[dict]:
  """Rewrites `path` (atomically) to the rows for which keep(row) holds, and ends it with a
  complete line; returns those rows. Nothing is written when nothing changes."""
  if not os.path.exists(path):
    return []
  with open(path, "rb") as f:
    rows, repaired = _parse(path, f.read())
  kept = [row for row in rows if keep(row)]
  if repaired or len(kept) != len(rows):
    replace_rows(path, kept)
  return kept


def replace_rows(path: str | os.PathLike, rows) -> None:
  """Writes `rows` to `path` through a temporary file and a rename (atomic)."""
  replace_bytes(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def _new_file_mode() -> int:
  """The mode open() gives a new file under the current umask."""
  try:
    with open("/proc/self/status") as f:  # reads the umask without changing it
      for line in f:
        if line.startswith("Umask:"):
          return 0o666 & ~int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  mask = os.umask(0o022)  # elsewhere the only way to read it is to set it, for a moment
  os.umask(mask)
  return 0o666 & ~mask


def replace_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Replaces `path` by `data` atomically: a temporary file in the same folder, flushed to disk,
  then renamed over it. A kill at any moment leaves the old contents or the new, whole.

  The file keeps the mode of the one it replaces, or gets the one a file created by open()
  would (mkstemp's temporary file is private, 0600, whatever the umask)."""
  folder = os.path.dirname(os.path.abspath(path))
  try:
    mode = os.stat(path).st_mode & 0o7777
  except FileNotFoundError:
    mode = _new_file_mode()
  with naming(path):  # a full disk's error names the file, not the temporary one
    fd, temporary = tempfile.mkstemp(
      dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
      with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      os.replace(temporary, path)
    except BaseException:
      if os.path.exists(temporary):
        os.unlink(temporary)
      raise


@contextlib.contextmanager
def naming(path: str | os.PathLike):
  """Re-raises an OSError as one that names `path`: a failed write or flush names no file."""
  try:
    yield
  except OSError as error:
    if error.filename == str(path) or error.errno is None:
      raise
    raise OSError(error.errno, error.strerror, str(path)) from error


# replace_bytes's temporary files: "." + the file's name + "." + mkstemp's 8 characters + ".tmp".
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
  """Deletes the temporary files replace_bytes left in `folder` when its process was killed
  between creating one and renaming it; returns their paths.

  Only for a folder no other process is writing to (a run's, under its lock): another writer's
  temporary file in flight looks the same."""
  removed = []
  try:
    names = os.listdir(folder)
  except (FileNotFoundError, NotADirectoryError):
    return removed
  for name in names:
    path = os.path.join(folder, name)
    if _TEMPORARY.fullmatch(name) and os.path.isfile(path) and not os.path.islink(path):
      os.unlink(path)
      removed.append(path)
  return removed


def write_rows(path: str | os.PathLike, rows, *, append: bool = False) -> None:
  """Appends one line per row, or (append=False) replaces the file atomically."""
  if not append:
    replace_rows(path, rows)
    return
  with naming(path), open(path, "a") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
