"""Shared fixtures: a tiny GAN config that trains in seconds on a CPU; JAX's persistent
compilation cache for the whole suite."""

import contextlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import jax
import pytest

from configs import gan, gan_setd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(setd: bool = False, **overrides):
  """configs/gan.py (or gan_setd.py) shrunk: small nets, 1,000 points, 60 steps."""
  config = (gan_setd if setd else gan).get_config()
  config.data.num_train = 1000
  config.model.generator.width = 32
  config.model.generator.depth = 2
  config.model.discriminator.width = 32
  config.model.discriminator.depth = 2
  config.train.batch_size = 32
  config.train.num_steps = 60
  config.train.steps_per_dispatch = 10
  config.train.log_every = 20
  config.train.eval_every = 40
  config.train.checkpoint_every = 20
  config.eval.num_samples = 500
  # dotted paths, as on the command line; an unknown key raises, as there
  config.update_from_flattened_dict(overrides)
  return config


# Bounded (least recently used entries go first); the bound needs `filelock`, which also keeps
# processes sharing the cache from reading an entry another is still writing.
COMPILATION_CACHE_BYTES = 2 * 1024**3
# XLA's CPU compiler at its cheapest: no LLVM optimization, no fusion emitters. The suite's small
# programs run for far less time than they compile; measured cold on 2 cores, four of the
# heaviest files (gan_trainer, denoise, pacgan, samplers) took 272 s at the default and 125 s so.
TEST_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"


# Bytes a test process writes to the compilation cache between two scans of it (below).
CACHE_SCAN_EVERY_BYTES = 64 * 1024**2


def _scan_the_cache_less_often() -> None:
  """JAX keeps the cache's bound by scanning the whole folder (a stat and a read of every entry's
  access time) before each write: a cold run writes a few thousand entries, each scan reads up to
  a few thousand files, and the scans cost minutes of CPU, serialized by the cache's lock. In the
  test processes a scan runs before a process's first write and again after every
  CACHE_SCAN_EVERY_BYTES it writes, so the bound holds to within that much per process. Writes
  stay under the lock (no reader sees half an entry); command subprocesses keep JAX's own scan."""
  try:
    from jax._src import lru_cache
  except ImportError:  # another jax: its own eviction, unchanged
    return
  scan = getattr(lru_cache.LRUCache, "_evict_if_needed", None)
  if scan is None or getattr(scan, "scans_less_often", False):
    return
  since_scan = [None]  # bytes written since the last scan; None before the first

  def evict_if_needed(self, *, additional_size: int = 0) -> None:
    if since_scan[0] is None or since_scan[0] + additional_size > CACHE_SCAN_EVERY_BYTES:
      scan(self, additional_size=additional_size)
      since_scan[0] = 0
    since_scan[0] += additional_size

  evict_if_needed.scans_less_often = True
  lru_cache.LRUCache._evict_if_needed = evict_if_needed


def xla_flags_with(*flags: str) -> str:
  """XLA_FLAGS for a test's subprocess: the suite's own (TEST_XLA_FLAGS) and `flags`, so that
  the subprocess compiles what the test process would, bit for bit."""
  return " ".join([os.environ.get("XLA_FLAGS", ""), *flags]).strip()


def pytest_configure(config):
  """Compiled programs are kept on disk and shared by every test, xdist worker and command
  subprocess: the suite compiles the same small programs many times (each test builds its own
  trainer, and jit caches live in one process). A cached program is the one XLA would compile
  again from the same HLO and options (both in its key), so no result changes; only time."""
  cache = getattr(config, "cache", None)
  path = (
    str(cache.mkdir("jax_compilation_cache"))
    if cache is not None
    else os.path.join(tempfile.gettempdir(), "jgen_jax_compilation_cache")
  )
  settings = {
    "jax_compilation_cache_dir": path,
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
  }
  if importlib.util.find_spec("filelock") is not None:
    settings["jax_compilation_cache_max_size"] = COMPILATION_CACHE_BYTES
    _scan_the_cache_less_often()
  for name, value in settings.items():
    jax.config.update(name, value)
    os.environ[name.upper()] = str(value)  # the subprocesses' JAX reads these at import
  _train_the_digit_classifier_at_xla_defaults(config)
  # Every test compares runs made under the same flags; the one test of digests recorded at
  # XLA's defaults runs them in a process of its own without these (tests/test_pacgan.py).
  # JGEN_TEST_XLA_DEFAULT=1 runs the whole suite at XLA's defaults.
  flags = os.environ.get("XLA_FLAGS", "")
  if not os.environ.get("JGEN_TEST_XLA_DEFAULT") and TEST_XLA_FLAGS not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {TEST_XLA_FLAGS}".strip()
  # xdist hands out files in collection order (longest first, below), not by test count.
  config.option.loadscopereorder = False


def _train_the_digit_classifier_at_xla_defaults(config) -> None:
  """Where neither the shipped weights nor the cache hold the current recipe's classifier (a
  recipe change not shipped yet), train it once before the workers start, in a process at
  XLA's default settings: the cheapest settings below make its 30 epochs of convolutions take
  minutes (3m17s against about 30 s, measured on 2 cores), and the cached weights are then the
  ones every other run on the machine uses."""
  from jgen.evals import digit_classifier

  if hasattr(config, "workerinput") or digit_classifier.is_cached():
    return
  code = "from jgen.evals import digit_classifier as c; c.load_digit_classifier()"
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# Seconds per test file in the last run, kept in pytest's cache: the next run starts the longest
# files first, so that under xdist no long file starts last and runs on alone.
FILE_SECONDS = "jgen/seconds_per_file"
_seconds_this_run: dict[str, float] = {}
# Where no run has been timed (a fresh clone, CI): the seconds per file of a whole cold run on a
# 2-core machine, copied from .pytest_cache/v/jgen/seconds_per_file after it. Only the order
# comes from them; a stale entry costs some time, never a result.
COLD_SECONDS_FILE = pathlib.Path(__file__).with_name("seconds_per_file.json")


def _last_seconds(config) -> dict[str, float]:
  cache = getattr(config, "cache", None)
  return cache.get(FILE_SECONDS, {}) if cache is not None else {}


def pytest_collection_modifyitems(config, items):
  seconds = _last_seconds(config) or json.loads(COLD_SECONDS_FILE.read_text())
  # Files without a time (new ones) go first; a file's tests stay together.
  items.sort(key=lambda item: -seconds.get(item.nodeid.split("::")[0], float("inf")))


def _is_whole_suite(config) -> bool:
  """The default run (the README's command): every file's time is the time of all its tests."""
  return (
    config.args_source == pytest.Config.ArgsSource.TESTPATHS
    and not config.option.keyword
    and not config.option.markexpr
    and not getattr(config.option, "lf", False)
  )


def pytest_runtest_logreport(report):
  path = report.nodeid.split("::")[0]
  _seconds_this_run[path] = _seconds_this_run.get(path, 0.0) + report.duration


def pytest_sessionfinish(session):
  config = session.config
  if hasattr(config, "workerinput"):
    return  # an xdist worker: the controller sees every report and records them
  if _seconds_this_run and getattr(config, "cache", None) is not None and _is_whole_suite(config):
    config.cache.set(FILE_SECONDS, _seconds_this_run)


# What a picture holds where pictures_unrendered() is in force: a PNG signature, then a note.
UNRENDERED_PNG = b"\x89PNG\r\n\x1a\n not rendered (tests/conftest.py pictures_unrendered)"


@contextlib.contextmanager
def pictures_unrendered():
  """Runs write each picture where and as they do (atomically, through plots.write_picture,
  where a full disk or a read-only folder meets it), but its bytes are UNRENDERED_PNG, not a
  rendered PNG: rendering (matplotlib's layout and drawing, about 0.5 CPU seconds a picture on
  2 cores) is most of a tiny run's time after its compilations, and results (digests, rows,
  errors) never depend on it. In force for every test (below); the tests that read a picture
  render theirs (pictures_rendered), as tests/test_plots.py does. Commands started in processes
  of their own render theirs; those forked by tests/forked_commands.py do not."""
  from jgen.viz import plots

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(plots, "png_bytes", _unrendered(plots.png_bytes))
    yield


def _unrendered(png_bytes):
  def unrendered_png(figure, dpi=None) -> bytes:
    return UNRENDERED_PNG

  unrendered_png.rendered = getattr(png_bytes, "rendered", png_bytes)
  return unrendered_png


@contextlib.contextmanager
def pictures_rendered():
  """Inside pictures_unrendered: pictures rendered again, for a run whose pictures a test reads."""
  from jgen.viz import plots

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(plots, "png_bytes", getattr(plots.png_bytes, "rendered", plots.png_bytes))
    yield


@pytest.fixture(autouse=True, scope="session")
def _pictures_unrendered_unless_a_test_reads_them():
  with pictures_unrendered():
    yield


@pytest.fixture
def make_tiny_config():
  return tiny_config


@pytest.fixture(scope="session")
def digit_classifier():
  """The digit classifier: the weights that ship with jgen (jgen/evals/weights/), or where the
  recipe has changed, the cached one (trained once per machine, ~15 s)."""
  from jgen.evals import digit_classifier as classifier_lib

  return classifier_lib.load_digit_classifier()
