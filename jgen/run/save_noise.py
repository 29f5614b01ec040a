"""What a failed asynchronous orbax save leaves behind, kept off stderr.

When a save fails (a full disk), the run reports it in one line (jgen/run/checkpoints.py). The
save's background work fails too, and Python would report each piece as it is collected, before
and after that line: TensorStore callbacks that find the save's event loop closed (56
tracebacks for one full disk) and orbax coroutines never finished (the unraisable hook), tasks
and futures whose exception nobody retrieved (asyncio's logger), and at exit the coroutines
never awaited (RuntimeWarning). Each is recognised by orbax's source files or by naming a folder a
run saves its checkpoints to; everything else is reported as before, and JGEN_DEBUG=1 shows
them all (for the warnings, set before the run opens its checkpoints).
"""

import logging
import os
import re
import sys
import traceback
import warnings

_ORBAX_SOURCE = f"{os.sep}orbax{os.sep}"
_save_folders: set[str] = set()  # every checkpoints folder this process has opened
_filtered_modules = 0  # how many orbax modules the warnings filter knows the names of


def quiet_background_errors(folder: str) -> None:
  """Keeps the background noise of saves to `folder` (and of any orbax save) off stderr."""
  _save_folders.add(os.path.abspath(folder))
  if not _shown():
    _ignore_unawaited_orbax_coroutines()
  previous = sys.unraisablehook
  if getattr(previous, "jgen_quiet", False):
    return

  def hook(unraisable):
    if _shown() or not is_background_noise(unraisable):
      previous(unraisable)

  hook.jgen_quiet = True
  sys.unraisablehook = hook
  logging.getLogger("asyncio").addFilter(unretrieved_report_filter)


def _shown() -> bool:
  return bool(os.environ.get("JGEN_DEBUG"))


def _names_a_save(text: str) -> bool:
  return _ORBAX_SOURCE in text or any(folder in text for folder in _save_folders)


def is_background_noise(unraisable) -> bool:
  """An unraisable error of a save: a callback finding its loop closed, an orbax coroutine."""
  error, culprit = unraisable.exc_value, unraisable.object
  if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
    return True
  code = getattr(culprit, "cr_code", None)
  return code is not None and _ORBAX_SOURCE in code.co_filename


def unretrieved_report_filter(record: logging.LogRecord) -> bool:
  """False for asyncio's report of a task or future of a save whose exception nobody retrieved.
  A Task names its coroutine's file in the message; a gathering future has orbax's files only
  in its exception's traceback; a TensorStore future has no Python traceback, and its error
  names the file it failed to write under the checkpoints folder."""
  message = record.getMessage()
  if _shown() or "exception was never retrieved" not in message:
    return True
  texts = [message]
  if record.exc_info and record.exc_info[2] is not None:
    texts += [frame.filename for frame in traceback.extract_tb(record.exc_info[2])]
  return not any(_names_a_save(text) for text in texts)


def _ignore_unawaited_orbax_coroutines() -> None:
  """A warnings filter, not a hook: the warning of a coroutine collected at exit is issued
  while sys.modules is being emptied, where Python skips the warnings module's functions but
  still applies its filters. The warning names only the coroutine's qualified name, whose first
  part is a function or class of the orbax module that defines it."""
  global _filtered_modules
  modules = [m for name, m in list(sys.modules.items()) if name.startswith("orbax.") and m]
  if len(modules) == _filtered_modules:
    return
  _filtered_modules = len(modules)
  names = {
    attribute
    for module in modules
    for attribute, value in list(vars(module).items())
    if str(getattr(value, "__module__", "")).startswith("orbax.")
  }
  pattern = "coroutine '(?:" + "|".join(map(re.escape, sorted(names))) + ")[.']"
  warnings.filterwarnings("ignore", message=pattern, category=RuntimeWarning)
