"""What a trainer supplies to the run loop, declared once; and what the loop shows observers.

`Trainer` is the whole interface jgen/run/loop.py (and replays, studies, evaluators) read from
a trainer object; `TrainerDefaults` is a base holding the defaults of the optional members, so
a trainer declares only what it uses. The trainers (jgen/trainers/*.py) subclass
TrainerDefaults; a frozen dataclass that subclasses it is declared `kw_only=True`, because a
field whose name has a default here (`population`, `step_by_step`, `trace`) would otherwise
count as defaulted and every later field would have to be too.
"""

import dataclasses
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import jax

from jgen.run import checkpoints, signals, trace, workdir
from jgen.run.schedule import Schedule

State = Any  # a trainer's train state: a pytree whose `step` is an int32 scalar


@runtime_checkable
class Trainer(Protocol):
  """A trainer object: frozen, hashed by identity (a static jit argument)."""

  # Per-step metrics averaged into each logged row, and those that stop the run when one is
  # NaN or inf.
  metric_names: tuple[str, ...]
  finite_metrics: tuple[str, ...]
  # Members trained in one program (vmap over a leading axis; 1 = a plain run), and how the
  # state is placed (None: a plain single-device jit).
  population: int
  state_sharding: jax.sharding.Sharding | None
  # Dispatch: one jitted step per dispatch, or a scanned chunk, rolled (unroll=1) or unrolled
  # (True); dispatch_for below is the rule for convolutional steps.
  step_by_step: bool
  unroll: int | bool
  # Per-step digests the step returns as metrics["trace"], and the state's parts they cover.
  trace: bool
  traced_parts: tuple[str, ...]
  picture_dir: str  # WORKDIR/<picture_dir>/step_N.png
  curves: tuple[str, ...]  # what metrics.png draws
  non_finite_hint: str  # what to change when a loss goes non-finite
  # Named evaluators (config.evals, jgen/datasets/evaluators.py): each is called as
  # evaluator(trainer, state, root, data) -> row at the logged steps that are multiples of its
  # `every`, and its row joins the logged one.
  evaluators: tuple

  def init_state(self, root: jax.Array) -> State:
    """The state at step 0, from the run's root key(s)."""

  def step(self, state: State, root: jax.Array, data) -> tuple[State, dict]:
    """The pure update of every member; `data` is what step_data returned."""

  def step_data(self, config, root: jax.Array, data, start: int, end: int):
    """What steps (start, end] read: the device data, or the host's batches of those steps."""

  def evaluate(self, state: State, root: jax.Array, data) -> tuple[Any, dict]:
    """(what picture draws, the evaluation row); a population's row holds lists."""

  def sample(self, state: State, key: jax.Array, num_samples: int):
    """`num_samples` samples [n, ...] ([P, n, ...] for a population; `key` then one per
    member): every random draw derives from `key`, which is a root key (the streams of
    jgen/core/rng.py are folded into it). Evaluation passes the run's root, so evaluators see
    the samples the rows were computed from."""

  def picture(self, path: str, samples, title: str, row: dict | None) -> None: ...

  def describe(self) -> str: ...

  def progress_text(self, row: dict) -> str: ...

  def begin(self, work_dir: str) -> None:
    """Before the first step of a session (warnings, fixed pictures)."""

  def check_resume(self, work_dir: str, config) -> None:
    """Raises if the workdir cannot be resumed by this trainer."""

  def finalize(self, state: State, root, data, work_dir: str, config, final_row: dict) -> dict:
    """The final row, with whatever the trainer adds after training."""


# Steps per dispatch where convolutional steps are unrolled (configs/dgn.py, configs/dip.py,
# jgen/studies/inverse_comparison.py's fits).
UNROLLED_STEPS = 10


class Dispatch(NamedTuple):
  step_by_step: bool
  unroll: int | bool


def dispatch_for(convolutional: bool, host_fed: bool = False, unrolled: bool = False) -> Dispatch:
  """`step_by_step` and `unroll` of a step: the one rule for convolutions inside a loop.

  XLA:CPU runs a convolution inside a rolled scan (a while loop) many times slower than the
  same step alone (measured: jgen/run/loop.py's docstring), so no convolution runs in one.
  `unrolled` steps (DGN, DIP, the inverse comparison's fits) scan short chunks unrolled, on
  every backend; other convolutional steps (GAN and denoisers on images) run one dispatch per
  step on CPU, and always when their batches come from the host. Both forms are kept because
  each gives the bits its trainers have always given: moving a trainer from one to the other
  changes its digests.
  """
  if unrolled:
    return Dispatch(step_by_step=False, unroll=True)
  cpu = jax.default_backend() == "cpu"
  return Dispatch(step_by_step=convolutional and (host_fed or cpu), unroll=1)


def compiled(trainer, key, build):
  """The program `build()` returns, kept on the trainer object under `key` and built once.

  Compiled programs live exactly as long as the trainer (a study of many cells does not
  accumulate them), and a trainer that trains again in the same process (a resume, a second
  run of one config) traces and compiles none of them again."""
  cache = vars(trainer).setdefault("_compiled", {})
  if key not in cache:
    cache[key] = build()
  return cache[key]


class TrainerDefaults:
  """The defaults of the optional members of Trainer; trainers subclass it."""

  population: ClassVar[int] = 1
  state_sharding: ClassVar[Any] = None
  step_by_step: ClassVar[bool] = False
  unroll: ClassVar[int | bool] = 1
  trace: ClassVar[bool] = False
  traced_parts: ClassVar[tuple] = ()
  picture_dir: ClassVar[str] = "samples"
  curves: ClassVar[tuple] = ()
  non_finite_hint: ClassVar[str] = "lower the learning rate"
  evaluators: ClassVar[tuple] = ()

  def step_data(self, config, root, data, start: int, end: int):
    del config, root, start, end
    return data

  def sample(self, state, key, num_samples: int):
    del state, key, num_samples
    raise NotImplementedError(
      f"{type(self).__name__} has no sampler: it does not draw new samples from a prior, so "
      "no sample-based evaluator can score it"
    )

  def begin(self, work_dir: str) -> None:
    del work_dir

  def check_resume(self, work_dir: str, config) -> None:
    del work_dir, config

  def finalize(self, state, root, data, work_dir: str, config, final_row: dict) -> dict:
    del state, root, data, work_dir, config
    return final_row


@dataclasses.dataclass
class Session:
  """The pieces of one training session that the loop drives; observers read them."""

  trainer: Trainer
  config: object
  schedule: Schedule
  root: jax.Array
  data: object
  work_dir: str
  is_chief: bool  # process 0: the one that writes the workdir's files
  ckpts: checkpoints.Checkpoints
  log: workdir.MetricsLog
  trace_log: trace.TraceLog
  observers: tuple
  stops: signals.StopRequests
  identity: dict = dataclasses.field(default_factory=dict)
  verified: bool = True  # the restored checkpoint (if any) matched its recorded digests


class Observer(Protocol):
  """What watches a run through the loop's hooks (jgen/collapse/recorder.py's CaseRecorder).

  `start` rather than the constructor receives the session: the checkpoints, trace and rows an
  observer reads exist only once the loop has taken the lock and resumed.
  """

  stop_reason: str | None  # set to stop training after the current row; the loop logs it

  def start(self, session: Session) -> None:
    """Once, after the resume and before the first step."""

  def on_evaluation(self, row: dict, num_steps: int) -> None:
    """With each logged row, after its picture is written."""

  def on_non_finite(self, bad_step: int, values: dict) -> str | None:
    """Before the loop stops on a non-finite metric: where the steps leading to it are kept,
    or None."""

  def marked_steps(self) -> list[int]:
    """Steps to mark on the run's metric curves."""
