"""The one host loop every trainer runs on.

A trainer (jgen/trainers/*.py) supplies only what is its own: the members of
jgen/run/interface.py's `Trainer` protocol (its state, pure step, evaluation, sampler, picture
and a few declared facts), optional ones defaulted by `TrainerDefaults`.

Why convolutional trainers dispatch one step at a time or unroll their chunks: XLA:CPU runs a
convolution inside a rolled scan (a while loop) many times slower than the same step alone,
measured here at 257 vs 18 ms for the stacked-digits GAN step, 290 vs 4 ms for a DGN step and
536 vs 35 ms for the 28x28 digit classifier's. The step is the same jitted function either way.

The caller may also pass observers (interface.Observer): the loop calls their hooks at the start,
at every logged row and on a non-finite loss. A trainer's train_and_evaluate passes the
collapse cases' recorder (jgen/collapse/recorder.py) this way, so the loop knows nothing of
detectors or cases.

The loop does the rest, the same way for every trainer: take the workdir's lock; refuse a
changed config or fingerprint, or resume from the newest checkpoint that passes its digests
(falling back past damaged ones); dispatch chunks that end on every log, evaluation and
checkpoint step; fetch metrics only at log steps; stop on a non-finite loss keeping the
last good checkpoint; log rows with one `state_digest`; evaluate, picture, checkpoint (with
the state's digests and the run's fingerprint) and call the observers; surface a
failed save after the chunk it failed in; on SIGTERM or SIGINT checkpoint after the current
chunk and raise signals.StopRequested; print progress with an ETA; return the final row.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jgen.core import environment, jsonl, parallel
from jgen.run import checkpoints, fingerprint, interface, lock, signals, trace, workdir
from jgen.run.interface import Observer, Session, Trainer
from jgen.run.schedule import Progress, Schedule, format_seconds
from jgen.viz import plots

__all__ = [
  "NonFiniteError",
  "Observer",
  "Progress",
  "Schedule",
  "Session",
  "format_seconds",
  "run_chunk",
  "train",
]


class NonFiniteError(RuntimeError):
  """A non-finite metric stopped the run: at `step`, where the metrics were `values`."""

  def __init__(self, message: str, step: int | None = None, values: dict | None = None):
    super().__init__(message)
    self.step, self.values = step, values


def _jit(trainer, fn):
  sharding = trainer.state_sharding
  if sharding is None:
    return jax.jit(fn, donate_argnums=0)
  replicated = parallel.replicated(sharding.mesh)
  return jax.jit(
    fn,
    in_shardings=(sharding, sharding, sharding),
    out_shardings=(sharding, replicated),
    donate_argnums=0,
  )


def _chunk_fn(trainer, length: int):
  def chunk(state, root, data):
    return jax.lax.scan(
      lambda state, _: trainer.step(state, root, data),
      state,
      length=length,
      unroll=trainer.unroll,
    )

  return _jit(trainer, chunk)


def run_chunk(trainer, state, root, data, length: int):
  """`length` steps from `state`; metrics come back stacked, one entry per step.

  `data` is the training set on the device, or for data read on the host the run's
  HostBatches, from which each step takes its batch.
  """
  if not trainer.step_by_step:
    fn = interface.compiled(trainer, ("chunk", length), lambda: _chunk_fn(trainer, length))
    return fn(state, root, data)
  step = interface.compiled(trainer, "step", lambda: _jit(trainer, trainer.step))
  outputs = []
  for _ in range(length):
    batch = data.next_batch() if hasattr(data, "next_batch") else data
    state, metrics = step(state, root, batch)
    outputs.append(metrics)
  return state, jax.tree.map(lambda *steps: jnp.stack(steps), *outputs)


def first_non_finite(stacked: dict, names, first_step: int) -> tuple[int, dict] | None:
  """(step, metrics at that step) of the first non-finite metric among `names`, or None.

  Metrics are [steps] for a run, [steps, P] for a population (any member counts).
  """
  steps = len(stacked[names[0]])
  finite = np.all(
    [np.isfinite(stacked[name]).reshape(steps, -1).all(axis=1) for name in names], axis=0
  )
  if finite.all():
    return None
  index = int(np.argmin(finite))
  return first_step + index + 1, {k: np.asarray(stacked[k][index]).tolist() for k in names}


def train(trainer: Trainer, config, work_dir: str, root: jax.Array, data, observers=()) -> dict:
  """Trains `trainer` in `work_dir` (resuming from its newest checkpoint); the final row.

  `observers` (see Observer) are called at the start, at every logged row and on a non-finite
  loss. Raises signals.StopRequested after checkpointing when SIGTERM or SIGINT arrives.
  """
  schedule = Schedule.from_config(config.train)
  checkpoints.check_keep(config.train.keep_checkpoints)
  workdir.check_config(config)
  workdir.prepare(work_dir)
  try:
    held = lock.acquire_for_run(work_dir)
    try:
      with signals.StopRequests() as stops:
        return _train(trainer, config, work_dir, root, data, schedule, stops, tuple(observers))
    finally:
      held.release()
  except OSError as error:  # a full disk, a read-only or deleted workdir: one line naming the file
    last = max(checkpoints.steps_on_disk(work_dir), default=None)
    raise workdir.io_error(error, work_dir, last) from error


def _train(trainer, config, work_dir, root, data, schedule, stops, observers) -> dict:
  workdir.check_resumable(work_dir, config)
  checkpoints.check_folder(work_dir)  # history without checkpoints: refused before any write
  trainer.check_resume(work_dir, config)
  os.makedirs(os.path.join(work_dir, trainer.picture_dir), exist_ok=True)
  trainer.begin(work_dir)
  state = trainer.init_state(root)
  identity = fingerprint.fingerprint(config)
  if jax.process_index() == 0:
    workdir.remove_stale_temporaries(work_dir)
  ckpts = checkpoints.Checkpoints(work_dir, keep=config.train.keep_checkpoints)
  try:
    fingerprint.check(ckpts, identity, work_dir)
    state, start, verified = ckpts.restore_verified(state)
    if start:
      logging.info(
        "Resumed from the checkpoint at step %d (%s).",
        start,
        "digests verified" if verified else "unverified",
      )
    if start > schedule.num_steps:
      logging.warning(
        "train.num_steps=%d is below the newest checkpoint (step %d): nothing to train; the "
        "final row reports the state at step %d (checkpoints are never rewound: for a shorter "
        "run use a new --workdir).",
        schedule.num_steps,
        start,
        start,
      )
    is_chief = jax.process_index() == 0
    if is_chief:
      workdir.write_config(work_dir, config)
      changed = environment.record(work_dir)
      if start and changed:
        logging.warning(
          "resuming under another environment than the last session's (%s): the rows from "
          "here on need not be the bits an uninterrupted run would give; %s keeps both.",
          ", ".join(changed),
          os.path.join(work_dir, environment.FILE),
        )
    log = workdir.MetricsLog(work_dir, resume_step=start, enabled=is_chief)
    trace_log = trace.TraceLog(
      work_dir, trainer.traced_parts, resume_step=start, enabled=is_chief and trainer.trace
    )
    if start == 0:  # a case that fires before the first periodic checkpoint starts here
      parts = trace.part_digests(state)
      if 0 not in ckpts.all_steps():  # else restored from it, its row already in parts.jsonl
        ckpts.save(0, state, parts, identity)
      if not trace_log.parts(-1, 0):
        trace_log.append_parts(0, parts)
    data = trainer.step_data(config, root, data, start, schedule.num_steps)
    session = Session(
      trainer,
      config,
      schedule,
      root,
      data,
      work_dir,
      is_chief,
      ckpts,
      log,
      trace_log,
      observers,
      stops,
      identity,
      verified,
    )
    for observer in observers:
      observer.start(session)
    try:
      state, final_row = _loop(session, state, start)
    finally:
      log.close()
  except BaseException:
    ckpts.close(raise_errors=False)  # the error in flight is the one to report
    raise
  ckpts.close()
  final_row = trainer.finalize(state, root, data, work_dir, config, final_row)
  if jax.process_index() == 0:
    plots.metric_curves(
      os.path.join(work_dir, "metrics.png"),
      jsonl.read_rows(log.path),
      trainer.curves,
      title=f"{os.path.basename(os.path.normpath(work_dir))}: {trainer.describe()}",
      case_steps=[step for observer in observers for step in observer.marked_steps()],
    )
  return final_row


def _stop_reasons(session: Session) -> list[str]:
  return [observer.stop_reason for observer in session.observers if observer.stop_reason]


def _loop(session: Session, state, start: int):
  trainer, schedule = session.trainer, session.schedule
  logging.info("%s: %d steps from %d.", trainer.describe(), schedule.num_steps, start)
  progress = Progress(start, schedule.num_steps)
  step, pending, last_eval = start, _load_window(session, start), None
  while step < schedule.num_steps and not _stop_reasons(session):
    length = schedule.chunk_length(step)
    state, chunk_outputs = run_chunk(trainer, state, session.root, session.data, length)
    pending.append((step, chunk_outputs))  # fetched only at log steps
    step += length
    session.ckpts.check()  # a failed asynchronous save stops the run now, not a save later
    stop = session.stops.should_stop() and step < schedule.num_steps
    if not schedule.should_log(step):
      if stop:
        _stop(session, state, step, pending)
      continue
    window = _fetch_window(session, pending)
    pending = []
    steps_per_sec, eta = progress.tick(step)
    parts = trace.part_digests(state)
    session.trace_log.append_parts(step, parts)
    row = {"step": step, **window, "steps_per_sec": steps_per_sec}
    row["state_digest"] = trace.state_digest(parts)
    if trainer.population > 1:
      row["member_digests"] = trace.member_digests(state)
    if schedule.should_eval(step):
      last_eval = row
      row.update(_evaluate_and_picture(session, state, step))
    for evaluator in trainer.evaluators:  # config.evals, each on its own schedule
      if step % evaluator.every == 0:
        row.update(evaluator(trainer, _readable(trainer, state), session.root, session.data))
    session.log.write(row)
    for observer in session.observers:
      observer.on_evaluation(row, schedule.num_steps)
    if schedule.should_checkpoint(step):
      session.ckpts.save(step, state, parts, session.identity)
    logging.info("%s", _progress_line(trainer, row, schedule.num_steps, eta))
    progress.restart_window(step)
    if stop:
      _stop(session, state, step, [], saved=schedule.should_checkpoint(step), parts=parts)
  if _stop_reasons(session):
    logging.warning("Stopped at step %d: %s.", step, "; ".join(_stop_reasons(session)))
  if last_eval is None:  # already complete: report the final state without training
    _, eval_row = trainer.evaluate(_readable(trainer, state), session.root, session.data)
    digest = trace.state_digest(trace.part_digests(state))
    last_eval = {"step": step, **eval_row, "state_digest": digest}
  return state, last_eval


def _stop(session: Session, state, step: int, pending, saved=False, parts=None):
  """Checkpoints the state after a SIGTERM or SIGINT and raises signals.StopRequested.

  Steps since the last logged row are kept with the checkpoint (their trace rows on disk,
  their metrics in S.window.npz), so the resumed run logs exactly the rows an uninterrupted
  one would. The digests of a step that is not a log step go only into the checkpoint's
  record: trace/parts.jsonl holds log steps, as an uninterrupted run's does."""
  if pending:
    fetched = _fetch_steps(session, pending)
    if jax.process_index() == 0:
      window = {k: np.concatenate([o[k] for o in fetched]) for k in session.trainer.metric_names}
      session.ckpts.save_window(step, pending[0][0], window)
  if parts is None:
    parts = trace.part_digests(state)
  if not saved:
    session.ckpts.save(step, state, parts, session.identity)
  session.ckpts.wait()
  raise signals.StopRequested(
    f"stopped by {session.stops.signal_name} at step {step} of {session.schedule.num_steps}: "
    f"checkpoint saved in {session.ckpts.step_dir(step)}; rerun the same command to resume"
  )


def _load_window(session: Session, start: int) -> list:
  """The metrics of the steps a stopped run took after its last logged row (checked readable
  when its checkpoint was restored)."""
  stored = None if session.schedule.should_log(start) else session.ckpts.window(start)
  if stored is None:
    return []
  first_step, window = stored
  return [(first_step, {k: window[k] for k in session.trainer.metric_names})]


def _readable(trainer, state):
  """`state`, replicated on every device if it is sharded over processes (a population split
  over hosts): a trainer's evaluation reads its outputs on the host, which needs every member
  in every process."""
  local = lambda x: not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated
  if all(local(x) for x in jax.tree.leaves(state)):
    return state
  replicated = parallel.replicated(trainer.state_sharding.mesh)
  gather = interface.compiled(
    trainer, "replicate", lambda: jax.jit(lambda s: s, out_shardings=replicated)
  )
  return gather(state)


def _evaluate_and_picture(session: Session, state, step: int) -> dict:
  trainer = session.trainer
  samples, eval_row = trainer.evaluate(_readable(trainer, state), session.root, session.data)
  if jax.process_index() == 0:
    title, shown, shown_row = f"step {step}", samples, eval_row
    if trainer.population > 1:  # the picture shows member 0; the row has every member
      title += f", member 0 of {trainer.population}"
      shown, shown_row = samples[0], {k: v[0] for k, v in eval_row.items()}
    path = os.path.join(session.work_dir, trainer.picture_dir, f"step_{step:08d}.png")
    trainer.picture(path, shown, title, shown_row)
  return eval_row


def _fetch_window(session: Session, pending) -> dict:
  """Means of the metrics since the last row."""
  fetched = _fetch_steps(session, pending)
  names = session.trainer.metric_names
  window = {k: np.concatenate([o[k] for o in fetched]).mean(axis=0) for k in names}
  return {k: v.tolist() if v.ndim else float(v) for k, v in window.items()}


def _non_finite_advice(session: Session) -> str:
  if not session.verified:
    return (
      f"The run resumed from an unverified checkpoint (no digests recorded), so a damaged "
      f"checkpoint may be the cause as well as the settings: {session.trainer.non_finite_hint}, "
      "in a new --workdir, or resume from an older checkpoint."
    )
  return (
    f"The last good checkpoint is step {session.ckpts.latest_step()}: "
    f"{session.trainer.non_finite_hint}, in a new --workdir, or resume from it."
  )


def _fetch_steps(session: Session, pending) -> list[dict]:
  """The per-step metrics of `pending` chunks on the host, their trace rows to disk.

  Stops the run on a non-finite metric, after recording the steps that led to it.
  """
  trainer = session.trainer
  fetched = jax.device_get([outputs for _, outputs in pending])
  for (first_step, _), outputs in zip(pending, fetched, strict=True):
    bad = first_non_finite(outputs, trainer.finite_metrics, first_step)
    if "trace" in outputs:
      last = len(outputs["trace"]) if bad is None else bad[0] - first_step
      session.trace_log.append_steps(first_step, outputs["trace"][:last])
    if bad is not None:
      bad_step, values = bad
      kept = [observer.on_non_finite(bad_step, values) for observer in session.observers]
      recorded = "".join(
        f" The steps leading to it are recorded in {case_dir}." for case_dir in kept if case_dir
      )
      raise NonFiniteError(
        f"non-finite loss at step {bad_step} ({values}); training stopped. "
        f"{_non_finite_advice(session)}{recorded}",
        step=bad_step,
        values=values,
      )
  return fetched


def _progress_line(trainer, row: dict, num_steps: int, eta: str) -> str:
  members = f" x {trainer.population} members" if trainer.population > 1 else ""
  return (
    f"step {row['step']}/{num_steps} ({100 * row['step'] / num_steps:.0f}%) "
    f"{row['steps_per_sec']:.0f} steps/s{members}, ETA {eta} | {trainer.progress_text(row)}"
  )
