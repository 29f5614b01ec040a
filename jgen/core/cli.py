r"""The one way a `python -m jgen.X` command defines flags, sets up logging and reports errors.

Commands import this module; nothing in the library does. The library raises ValueError or
RuntimeError with a message meant for the user, and the command's shell turns it into one line.
A command reads:

  from absl import flags
  from jgen.core import cli

  def define_flags() -> None:
    cli.define_config("Experiment config file.")
    cli.define_workdir("Directory for checkpoints, metrics, plots.")
    flags.DEFINE_bool("multihost", False, "...")

  def main() -> None:  # or -> int: the exit code
    print(json.dumps(library.call(flags.FLAGS.config, flags.FLAGS.workdir)))

  if __name__ == "__main__":
    cli.run(main, define_flags)

`cli.run`:
  * defines the command's flags only when it runs, so that importing any command module defines
    nothing: several commands share flag names (--config, --workdir, --out) and tests import
    them side by side;
  * parses them, turning a bad flag, a bad `--config.x=v` override, a config file that fails to
    load, a missing required flag, or a positional argument into one `jgen.X: error: ...` line;
  * sets up logging: absl INFO for jgen's own progress (WARNING with quiet=True, for commands
    whose stdout and stderr are their output), and only warnings from orbax, JAX's backend
    probe ("Unable to initialize backend 'tpu' ... Failed to open libtpu.so"), tensorstore and
    the distributed runtime, which log every save and probe at INFO;
  * runs main(), ends quietly when a reader closes the pipe (`jgen.X | head`), and turns a
    ValueError or RuntimeError into `jgen.X: error: <message>` and exit code 1 (or the
    error's `exit_code`: 75 for a run stopped by SIGTERM or Ctrl-C after its checkpoint).
    JGEN_DEBUG=1 re-raises instead, with the traceback. JGEN_PARSE_ONLY=1 stops after parsing.

A command whose failures need another exit code, or a message before it stops, calls
cli.fail(message, code).
"""

import logging as std_logging
import os
import sys
from collections.abc import Callable, Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from jgen.core import parallel

# Loggers whose INFO lines are routine (a checkpoint saved, a backend probed): shown from WARNING
# up. Matched against the module path of each record, since orbax logs through absl's logger.
NOISY_LOGGERS = (
  "orbax",
  "xla_bridge",
  "signaling_client",
  "tensorstore",
  "etils",
  "jax/_src/distributed",
  "jax/_src/compilation_cache",
  "jax/_src/cache_key",
)
DEBUG_ENV = "JGEN_DEBUG"
# Set: parse the command line (flags, config file, overrides) and exit 0 without running main.
PARSE_ONLY_ENV = "JGEN_PARSE_ONLY"


def define_config(help: str, default: str | None = None, required: bool = True):
  """--config=FILE[:switches] with --config.a.b=value overrides (an ml_collections config file)."""
  holder = config_flags.DEFINE_config_file("config", default, help)
  if required and default is None:
    flags.mark_flag_as_required("config")
  _show_in_short_help("config")
  return holder


def define_workdir(help: str, required: bool = True):
  """--workdir: the directory the command reads or writes."""
  holder = flags.DEFINE_string("workdir", None, help, required=required)
  _show_in_short_help("workdir")
  return holder


def _show_in_short_help(name: str) -> None:
  # --helpshort lists the flags of the program's own module; these are defined here.
  flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])


def program_name() -> str:
  """'jgen.main' for `python -m jgen.main`; the script's name otherwise."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if spec is not None and spec.name:
    return spec.name
  return os.path.splitext(os.path.basename(sys.argv[0] or "jgen"))[0]


def _is_noisy(record: std_logging.LogRecord) -> bool:
  path = record.pathname.replace(os.sep, "/")
  return any(name in path for name in NOISY_LOGGERS)


def _filter(record: std_logging.LogRecord) -> bool:
  if record.exc_info and _is_noisy(record) and not os.environ.get(DEBUG_ENV):
    # A library's traceback (orbax's failed background save): jgen reports it in one line.
    return False
  return record.levelno >= std_logging.WARNING or not _is_noisy(record)


class _ReadableFormatter(logging.PythonFormatter):
  """jgen's own lines as a person reads them: the progress bare, a warning as `warning: ...`.

  Libraries keep absl's prefix (level, time, thread, file:line), which is how one tells their
  lines from jgen's. JGEN_DEBUG=1 keeps it on every line."""

  def format(self, record: std_logging.LogRecord) -> str:
    if _is_noisy(record) or "/jgen/" not in record.pathname.replace(os.sep, "/"):
      return super().format(record)
    text = record.getMessage()
    if record.levelno >= std_logging.WARNING:
      text = f"{record.levelname.lower()}: {text}"
    if record.exc_info:
      text += "\n" + self.formatException(record.exc_info)
    return text


def setup_logging(quiet: bool = False) -> None:
  """absl INFO for jgen's progress (WARNING if quiet); routine INFO of libraries hidden.

  An explicit --verbosity (-v) wins over both levels."""
  verbosity = flags.FLAGS["verbosity"] if "verbosity" in flags.FLAGS else None
  if verbosity is None or not verbosity.present:
    logging.set_verbosity(logging.WARNING if quiet else logging.INFO)
  handler = logging.get_absl_handler()
  if _filter not in handler.filters:
    handler.addFilter(_filter)
  if not os.environ.get(DEBUG_ENV):
    handler.setFormatter(_ReadableFormatter())


def _innermost(error: BaseException) -> BaseException:
  while (error.__cause__ or error.__context__) is not None:
    error = error.__cause__ or error.__context__
  return error


def _flag_error_text(error: BaseException) -> str:
  """One line (two at most, for 'Did you mean') saying what is wrong with the command line."""
  if isinstance(error, (AttributeError, KeyError)):
    # ml_collections: an override of a key the config lacks. The useful text ("'foo'\nDid you
    # mean ...") sits in the innermost argument of the exception chain.
    cause = error
    while isinstance(cause, BaseException) and cause.args:
      cause = cause.args[0]
    return f"bad --config override: the config has no key {cause}"
  if isinstance(error, OSError):
    # ml_collections: "Failed loading config file ...\n  Attempted ...\n  [Errno 2] ...".
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"cannot load the config file: {lines[-1] if lines else error}"
  text = str(error)
  inner = _innermost(error)
  if inner is not error:
    # A flag's value failed to parse (a config file's get_config raised on an unknown `:switch`,
    # an override is not a number): absl wraps that message, traceback and all, into
    # "flag --name=value: ...". Keep the flag and the innermost message.
    first = text.splitlines()[0] if text else ""
    where = first.split(": ", 1)[0].removeprefix("flag ") if first.startswith("flag --") else ""
    return f"{where}: {inner}" if where else str(inner)
  marker = " must have a value other than None"
  if marker in text:
    name = text.split(marker)[0].rsplit("Flag --", 1)[-1]
    return f"--{name} is required (--helpshort lists the flags)"
  return text


def _config_load_error(value) -> BaseException | None:
  # ml_collections defers a config file that cannot be found or read: the flag holds a stand-in
  # that raises on first use, deep inside the command.
  if type(value).__name__ == "_ErrorConfig":
    return object.__getattribute__(value, "_error")
  return None


def flags_parser(program: str | None = None) -> Callable[[Sequence[str]], list[str]]:
  """An absl `flags_parser` that turns any command-line mistake into one clear line, exit 1.

  The command takes flags only: a positional argument is a mistake too (often a missing `--`).
  """

  def parse(argv: Sequence[str]) -> list[str]:
    name = program or program_name()
    try:
      rest = flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, OSError) as error:
      if os.environ.get(DEBUG_ENV):
        raise
      fail(_flag_error_text(error), program=name)
    for flag_name in flags.FLAGS:
      error = _config_load_error(flags.FLAGS[flag_name].value)
      if error is not None:
        fail(_flag_error_text(error), program=name)
    if len(rest) > 1:
      fail(
        f"unexpected arguments: {' '.join(rest[1:])} (flags take the form --name=value)",
        program=name,
      )
    return rest

  return parse


def fail(message: str, code: int = 1, program: str | None = None):
  """Prints `jgen.X: error: message` on stderr and exits with `code`."""
  print(f"{program or program_name()}: error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def run(
  main: Callable[[], int | None],
  define_flags: Callable[[], None] | None = None,
  *,
  quiet: bool = False,
  program: str | None = None,
) -> None:
  """Defines the flags, parses them, sets up logging and runs main(); never returns.

  main's return value is the exit code (None: 0). quiet=True: the command's output is all it
  prints (no INFO lines on stderr).
  """
  name = program or program_name()
  parallel.split_cpu_into_cores()  # before anything starts the backend
  if define_flags is not None:
    define_flags()

  def absl_main(argv: Sequence[str]) -> int | None:
    del argv  # flags_parser has refused positional arguments
    if os.environ.get(PARSE_ONLY_ENV):
      # tests/test_readme.py checks every command the README shows this way, without running it.
      print(f"{name}: flags parsed")
      return 0
    setup_logging(quiet=quiet)
    try:
      code = main()
      sys.stdout.flush()
      return code
    except BrokenPipeError:
      # `jgen.X | head` closed the pipe: the reader has what it wanted. Point stdout at
      # /dev/null so that Python's flush at exit does not raise again.
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
      return 0
    except KeyboardInterrupt:
      # A second Ctrl-C while the first one's checkpoint was being written.
      fail("interrupted before a checkpoint was saved; rerun the same command to resume", 130, name)
    except (ValueError, RuntimeError) as error:
      if os.environ.get(DEBUG_ENV):
        raise
      code = getattr(error, "exit_code", None)
      if code is not None:  # a stop that saved its checkpoint (SIGTERM, Ctrl-C): not an error
        print(f"{name}: {error}", file=sys.stderr, flush=True)
        sys.exit(code)
      fail(str(error), program=name)

  app.run(absl_main, flags_parser=flags_parser(name))
