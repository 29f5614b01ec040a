"""Runs that survive (issue 13): each fault is first produced on disk, then the run shows what it
does now: nothing lost, one clear line, and a resumed run bit-identical to an uninterrupted one.

Faults: flipped bits, a truncated file and a deleted file in the newest checkpoint; no intact
checkpoint; a NaN after an unverified restore; a partial last line in each history file; a kill
during a history rewrite; a second writer and a stale lock; SIGTERM and SIGINT mid-run; a
deleted config.json with another sampler; an edited explicit index stream; keep_checkpoints 0;
a resume to fewer steps; a failed asynchronous save; and the one-line messages of the
commands. Issue 18: history beside a missing, replaced or emptied checkpoints folder; a loss
non-finite before the first row; a full disk (simulated, and a real tiny tmpfs where root can
mount one); a damaged fingerprint; a read-only and a deleted workdir; undecodable config.json and
metrics.jsonl; a truncated window; an emptied metrics.jsonl; parts.jsonl after resumes; NaN in
the config; file modes; stale temporary files.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from jgen.core import jsonl
from jgen.run import checkpoints, fingerprint, lock, loop, signals, workdir
from jgen.trainers import gan as gan_trainer
from jgen.trainers import gan_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(work_dir) -> list[dict]:
  return jsonl.read_rows(os.path.join(work_dir, "metrics.jsonl"))


def _comparable(rows) -> list[dict]:
  return [{k: v for k, v in row.items() if k != "steps_per_sec"} for row in rows]


def _trace_bytes(work_dir) -> bytes:
  with open(os.path.join(work_dir, "trace", "steps.u32"), "rb") as f:
    return f.read()


def _assert_same_run(work_dir, reference) -> None:
  """Every logged row (but its speed) and every step's trace equal the reference's."""
  assert _comparable(_rows(work_dir)) == _comparable(_rows(reference))
  assert _trace_bytes(work_dir) == _trace_bytes(reference)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """An uninterrupted 60-step run (checkpoints 20, 40, 60): the reference of every resume."""
  work_dir = tmp_path_factory.mktemp("straight")
  gan_trainer.train_and_evaluate(tiny_config(), str(work_dir))
  return work_dir


def _copy(straight, tmp_path) -> str:
  work_dir = tmp_path / "run"
  shutil.copytree(straight, work_dir)
  return str(work_dir)


def _largest_data_file(step_dir: str) -> str:
  files = [
    os.path.join(folder, name)
    for folder, _, names in os.walk(step_dir)
    for name in names
    if os.sep + "d" + os.sep in os.path.join(folder, name)
  ]
  return max(files, key=os.path.getsize)


def _flip_bits(path: str) -> None:
  """One bit flipped in every 256 bytes of the file, away from its ends. A single bit in the
  middle was at times no damage at all: orbax's data files can hold ranges that no restore
  reads (2 KB of a 16 KB file in one run here), and the layout varies from run to run."""
  data = bytearray(open(path, "rb").read())
  assert len(data) > 256, f"{path} has {len(data)} bytes: too small to damage this way"
  for position in range(128, len(data) - 128, 256):
    data[position] ^= 0x10
  open(path, "wb").write(bytes(data))


def _damage(step_dir: str, how: str) -> None:
  target = _largest_data_file(step_dir)
  if how == "flip":
    _flip_bits(target)
  elif how == "truncate":
    os.truncate(target, os.path.getsize(target) // 2)
  else:
    os.unlink(os.path.join(step_dir, "default", "_METADATA") if how == "delete" else target)


# --- verified restore ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_intact_one(
  straight, tmp_path, how, caplog
):
  work_dir = _copy(straight, tmp_path)
  _damage(os.path.join(work_dir, "checkpoints", "60"), how)
  gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  lines = [r.getMessage() for r in caplog.records if "Checkpoint at step 60" in r.getMessage()]
  assert len(lines) == 1 and "set aside" in lines[0], caplog.text
  assert ("digest check" in lines[0]) or ("cannot be read" in lines[0])
  assert "<bound method" not in lines[0] and "See full TensorStore details" not in lines[0]
  assert "Resuming from step 40, the newest intact checkpoint." in caplog.text
  assert os.path.isdir(os.path.join(work_dir, checkpoints.DAMAGED_DIR, "60"))  # kept, not lost
  _assert_same_run(work_dir, straight)


def test_no_intact_checkpoint_is_one_clear_error(straight, tmp_path):
  work_dir = _copy(straight, tmp_path)
  for step in (20, 40, 60):
    _flip_bits(_largest_data_file(os.path.join(work_dir, "checkpoints", str(step))))
  rows_before = _rows(work_dir)
  with pytest.raises(checkpoints.CheckpointError, match=r"no intact checkpoint .*step 60 ") as info:
    gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  assert "\n" not in str(info.value) and "new --workdir" in str(info.value)
  assert _rows(work_dir) == rows_before
  assert sorted(os.listdir(os.path.join(work_dir, checkpoints.DAMAGED_DIR))) == [
    "20",
    "20.digests.json",
    "40",
    "40.digests.json",
    "60",
    "60.digests.json",
  ]


def test_a_nan_after_an_unverified_restore_does_not_blame_the_learning_rate(tmp_path, monkeypatch):
  work_dir = str(tmp_path)
  gan_trainer.train_and_evaluate(tiny_config(**{"train.num_steps": 20}), work_dir)
  for name in os.listdir(os.path.join(work_dir, "checkpoints")):  # as saved by an older jgen
    if name.endswith(checkpoints.DIGESTS_SUFFIX):
      os.unlink(os.path.join(work_dir, "checkpoints", name))
  os.unlink(os.path.join(work_dir, "trace", "parts.jsonl"))
  real_step = gan_step.train_step

  def poisoned_step(gan, state, root, data):
    new_state, metrics = real_step(gan, state, root, data)
    return new_state, {**metrics, "g_loss": jnp.where(state.step + 1 >= 27, jnp.nan, 1.0)}

  monkeypatch.setattr(gan_step, "train_step", poisoned_step)
  with pytest.raises(loop.NonFiniteError) as info:
    gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  assert "unverified checkpoint" in str(info.value)
  assert "last good checkpoint" not in str(info.value)


# --- atomic, self-healing history ------------------------------------------------------------


def test_partial_last_lines_are_dropped_with_a_warning_naming_the_file(straight, tmp_path, caplog):
  work_dir = _copy(straight, tmp_path)
  shutil.rmtree(os.path.join(work_dir, "checkpoints", "60"))  # resume from 40
  with open(os.path.join(work_dir, "metrics.jsonl"), "a") as f:
    f.write('{"step": 60, "d_loss": 1.38, "g_lo')  # a full disk stopped this write
  with open(os.path.join(work_dir, "trace", "parts.jsonl"), "a") as f:
    f.write('{"step": 60, "parts": {"g_params": "ab')
  with open(os.path.join(work_dir, "trace", "steps.u32"), "ab") as f:
    f.write(b"\x01\x02\x03\x04\x05\x06")
  gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  for name in ("metrics.jsonl", "parts.jsonl", "steps.u32"):
    assert f"{name}: dropped a partial last" in caplog.text, name
  _assert_same_run(work_dir, straight)


def test_a_damaged_line_inside_a_history_file_names_the_file_and_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 20}\n{"step": 4\n{"step": 60}\n')
  with pytest.raises(ValueError, match=r"metrics.jsonl, line 2, is not a JSON row"):
    jsonl.read_rows(path)


def test_a_kill_during_a_history_rewrite_loses_no_row(straight, tmp_path, monkeypatch):
  work_dir = _copy(straight, tmp_path)
  shutil.rmtree(os.path.join(work_dir, "checkpoints", "60"))  # rows past 40 must be rewritten
  rows_before = _rows(work_dir)

  def killed(src, dst):
    raise KeyboardInterrupt  # the process dies between writing the new file and renaming it

  monkeypatch.setattr(jsonl.os, "replace", killed)
  with pytest.raises(KeyboardInterrupt):
    gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  assert _rows(work_dir) == rows_before  # the old file, whole
  assert not [n for n in os.listdir(work_dir) if n.endswith(".tmp")]
  monkeypatch.undo()
  gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  _assert_same_run(work_dir, straight)


# --- one writer per workdir ----------------------------------------------------------------


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(straight, tmp_path):
  work_dir = _copy(straight, tmp_path)
  rows_before = _rows(work_dir)
  with lock.WorkdirLock(work_dir):
    with pytest.raises(lock.WorkdirLockedError, match=rf"in use by process {os.getpid()} on "):
      gan_trainer.train_and_evaluate(tiny_config(**{"train.num_steps": 80}), work_dir)
  assert _rows(work_dir) == rows_before
  assert not os.path.exists(os.path.join(work_dir, lock.LOCK_FILE))  # released


def test_a_stale_lock_of_a_dead_process_is_taken_over(straight, tmp_path, caplog):
  work_dir = _copy(straight, tmp_path)
  dead = subprocess.run(
    [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
  )
  holder = {"pid": int(dead.stdout), "host": "here", "started": 0, "command": "old"}
  with open(os.path.join(work_dir, lock.LOCK_FILE), "w") as f:
    json.dump(holder, f)
  final = gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  assert "no longer running; taking it over" in caplog.text
  assert final["step"] == 60
  assert not os.path.exists(os.path.join(work_dir, lock.LOCK_FILE))


# --- SIGTERM and SIGINT ----------------------------------------------------------------------

SIGNAL_OVERRIDES = {"train.eval_every": 1000, "train.checkpoint_every": 100}


def _cli_flags(config_overrides: dict) -> list[str]:
  """The command-line form of tiny_config(**config_overrides) (tests/conftest.py)."""
  values = {
    "data.num_train": 1000,
    "model.generator.width": 32,
    "model.generator.depth": 2,
    "model.discriminator.width": 32,
    "model.discriminator.depth": 2,
    "train.batch_size": 32,
    "train.steps_per_dispatch": 10,
    "train.log_every": 20,
    "train.eval_every": 40,
    "train.checkpoint_every": 20,
    "eval.num_samples": 500,
    **config_overrides,
  }
  return [f"--config.{key}={value}" for key, value in values.items()]


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_checkpoints_exits_75_and_the_rerun_is_bit_identical(
  tmp_path, signal_number
):
  work_dir = str(tmp_path / "stopped")
  command = [sys.executable, "-m", "jgen.main", "--config=configs/gan.py", f"--workdir={work_dir}"]
  command += _cli_flags({**SIGNAL_OVERRIDES, "train.num_steps": 100_000})
  process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  metrics = os.path.join(work_dir, "metrics.jsonl")
  deadline = time.time() + 120
  while not (os.path.exists(metrics) and os.path.getsize(metrics)) and time.time() < deadline:
    time.sleep(0.02)
  process.send_signal(signal_number)
  _, stderr = process.communicate(timeout=120)
  last_line = stderr.decode().strip().splitlines()[-1]
  assert process.returncode == signals.EXIT_STOPPED, stderr.decode()[-2000:]
  name = signal.Signals(signal_number).name
  assert last_line.startswith(f"jgen.main: stopped by {name} at step "), last_line
  assert "rerun the same command to resume" in last_line and "Traceback" not in stderr.decode()
  stopped = int(last_line.split(" at step ")[1].split()[0])
  assert os.path.isdir(os.path.join(work_dir, "checkpoints", str(stopped)))
  if signal_number == signal.SIGINT:
    return  # the same stop and checkpoint as SIGTERM's; its resume is checked once, below
  # Resume (in this process) to a length past the stop, and compare with a straight run.
  num_steps = stopped - stopped % 20 + 40
  config = tiny_config(**{**SIGNAL_OVERRIDES, "train.num_steps": num_steps})
  gan_trainer.train_and_evaluate(config, work_dir)
  reference = str(tmp_path / "straight")
  gan_trainer.train_and_evaluate(config, reference)
  _assert_same_run(work_dir, reference)


# --- run identity and keep_checkpoints -------------------------------------------------------


def test_a_deleted_config_json_does_not_let_another_sampler_resume(straight, tmp_path):
  work_dir = _copy(straight, tmp_path)
  os.unlink(os.path.join(work_dir, "config.json"))
  other = tiny_config(**{"sampler.kind": "with_replacement", "train.num_steps": 80})
  with pytest.raises(workdir.WorkdirMismatchError, match=r"sampler.kind: 'epoch_shuffle' ->"):
    gan_trainer.train_and_evaluate(other, work_dir)
  assert not os.path.exists(os.path.join(work_dir, "config.json"))  # nothing claims otherwise
  assert sorted(checkpoints.Checkpoints(work_dir, keep=3).all_steps()) == [20, 40, 60]


def test_an_edited_explicit_stream_is_noticed(tmp_path):
  stream = tmp_path / "stream.npy"
  np.save(stream, np.random.default_rng(0).integers(0, 1000, (40, 32)))
  overrides = {"sampler.kind": "explicit", "sampler.path": str(stream), "train.eval_every": 20}
  work_dir = str(tmp_path / "run")
  gan_trainer.train_and_evaluate(tiny_config(**overrides, **{"train.num_steps": 20}), work_dir)
  edited = np.load(stream)
  edited[30] = (edited[30] + 1) % 1000
  np.save(stream, edited)
  with pytest.raises(workdir.WorkdirMismatchError, match=r"the contents of sampler.path="):
    gan_trainer.train_and_evaluate(tiny_config(**overrides, **{"train.num_steps": 40}), work_dir)


def test_a_fingerprint_names_config_keys_streams_and_the_data_order_version():
  config = tiny_config()
  stored = fingerprint.fingerprint(config)
  assert "train.num_steps" not in stored["config"] and "seed" in stored["config"]
  stored["data_order"] -= 1
  config.model.generator.width = 64
  changed = fingerprint.differences(stored, fingerprint.fingerprint(config))
  assert changed == [
    f"the code's data order (version {stored['data_order']} -> {fingerprint.DATA_ORDER_VERSION})",
    "model.generator.width: 32 -> 64",
  ]


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_checkpoints_below_one_is_refused_before_anything_is_deleted(straight, tmp_path, keep):
  work_dir = _copy(straight, tmp_path)
  with pytest.raises(
    ValueError, match=rf"train.keep_checkpoints must be an integer >= 1 \(got {keep}\)"
  ):
    gan_trainer.train_and_evaluate(tiny_config(**{"train.keep_checkpoints": keep}), work_dir)
  assert sorted(checkpoints.Checkpoints(work_dir, keep=3).all_steps()) == [20, 40, 60]


def test_a_resume_to_fewer_steps_says_what_it_does(straight, tmp_path, caplog):
  work_dir = _copy(straight, tmp_path)
  final = gan_trainer.train_and_evaluate(tiny_config(**{"train.num_steps": 40}), work_dir)
  assert "train.num_steps=40 is below the newest checkpoint (step 60)" in caplog.text
  assert final["step"] == 60 and final["state_digest"] == _rows(straight)[-1]["state_digest"]
  _assert_same_run(work_dir, straight)


# --- save failures ---------------------------------------------------------------------------


def test_a_failed_save_stops_the_run_at_once_in_one_line(straight, tmp_path, monkeypatch, capfd):
  from orbax.checkpoint._src.path import atomicity

  real_finalize = atomicity.AtomicRenameTemporaryPath.finalize

  async def full_disk(self, *args, **kwargs):
    if os.path.basename(str(self.get_final())) == "40":
      raise OSError(28, "No space left on device")
    return await real_finalize(self, *args, **kwargs)

  monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", full_disk)
  work_dir = str(tmp_path / "run")
  with pytest.raises(checkpoints.CheckpointError) as info:
    gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  message = str(info.value)
  assert "\n" not in message and "step 40" in message and "No space left" in message
  assert "last good checkpoint is step 20" in message
  assert max(row["step"] for row in _rows(work_dir)) <= 60
  assert "Event loop is closed" not in capfd.readouterr().err
  monkeypatch.undo()
  gan_trainer.train_and_evaluate(tiny_config(), work_dir)  # resumes from 20
  _assert_same_run(work_dir, straight)


# --- one clear line for each mistake ---------------------------------------------------------


def _command(*args, timeout=120) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
  )


def _one_error_line(result: subprocess.CompletedProcess, program: str) -> str:
  lines = result.stderr.strip().splitlines()
  assert result.returncode != 0 and len(lines) == 1, result.stderr
  assert lines[0].startswith(f"{program}: error: "), lines[0]
  return lines[0]


def test_eval_num_samples_zero_is_refused_before_training(tmp_path):
  with pytest.raises(ValueError, match=r"eval.num_samples must be >= 1 \(got 0\)"):
    gan_trainer.train_and_evaluate(tiny_config(**{"eval.num_samples": 0}), str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
  path = tmp_path / "a_file"
  path.write_text("keep me")
  with pytest.raises(ValueError, match=r"is an existing file, not a directory"):
    gan_trainer.train_and_evaluate(tiny_config(), str(path))
  assert path.read_text() == "keep me"


def test_commands_answer_mistakes_in_one_line(tmp_path):
  missing = str(tmp_path / "nowhere")
  line = _one_error_line(_command("jgen.cases", f"--workdir={missing}"), "jgen.cases")
  assert missing in line and "not a directory" in line
  samples = tmp_path / "huge.npy"
  np.save(samples, np.full((2500, 2), 1e300))
  result = _command("jgen.evaluate", "--data=ring8", f"--samples={samples}")
  line = _one_error_line(result, "jgen.evaluate")
  assert "beyond float32's range" in line and "RuntimeWarning" not in result.stderr


def _forced_case_config(**overrides):
  """A tiny run whose diversity detector fires at step 40 (as tests/test_cases_replay.py's)."""
  return tiny_config(
    **{
      "collapse.arm_fraction": 0.0,
      "collapse.diversity_drop": 1e9,
      "collapse.max_cases": 1,
      "collapse.after_steps": 20,
      "train.eval_every": 20,
      **overrides,
    }
  )


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
  work_dir = tmp_path_factory.mktemp("cases")
  gan_trainer.train_and_evaluate(_forced_case_config(), str(work_dir))
  (name,) = os.listdir(work_dir / "cases")
  return work_dir / "cases" / name


def _damaged_case(case_dir, tmp_path, how: str) -> str:
  from jgen.collapse import recorder

  copy = str(tmp_path / "case")
  shutil.copytree(case_dir, copy)
  case = recorder.load_case(copy)
  start_dir = os.path.join(copy, "checkpoints", str(case["start_step"]))
  if how == "no checkpoint":
    shutil.rmtree(start_dir)
  elif how == "no _METADATA":
    os.unlink(os.path.join(start_dir, "default", "_METADATA"))
  elif how == "no trace.u32":
    os.unlink(os.path.join(copy, "trace.u32"))
  elif how == "truncated case.json":
    text = open(os.path.join(copy, recorder.CASE_FILE)).read()
    open(os.path.join(copy, recorder.CASE_FILE), "w").write(text[: len(text) // 2])
  elif how == "edited width":
    case.pop("dir")
    case["config"]["model"]["generator"]["width"] = 48
    open(os.path.join(copy, recorder.CASE_FILE), "w").write(json.dumps(case))
  return copy


@pytest.mark.parametrize(
  "how,expected",
  [
    ("no checkpoint", r"has no checkpoint at its start step 20 .*re-record it"),
    ("no _METADATA", r"start checkpoint of case .* cannot be read .*the case is damaged"),
    ("no trace.u32", r"has no trace.u32 .*cannot be replayed"),
    ("truncated case.json", r"case.json is damaged \(.* at line \d+, column \d+; truncated\?\)"),
    (
      "edited width",
      r"config does not fit the case's checkpoint \(g_params .*was case.json edited",
    ),
  ],
)
def test_a_damaged_case_is_one_clear_error(case_dir, tmp_path, how, expected):
  from jgen.collapse import recorder
  from jgen.replays import replay

  copy = _damaged_case(case_dir, tmp_path, how)
  with pytest.raises(recorder.DamagedCaseError, match=expected) as info:
    replay.verify(recorder.load_case(copy))
  assert "\n" not in str(info.value)


def test_a_damaged_case_does_not_block_a_resume_or_the_listing(case_dir, tmp_path, caplog):
  from jgen.collapse import recorder

  work_dir = tmp_path / "run"
  shutil.copytree(case_dir.parent.parent, work_dir)
  case_file = work_dir / "cases" / case_dir.name / recorder.CASE_FILE
  case_file.write_text(case_file.read_text()[:100])
  result = _command("jgen.cases", f"--workdir={work_dir}")
  assert result.returncode == 0 and "case.json is damaged" in result.stderr, result.stderr
  config = _forced_case_config(**{"train.num_steps": 80})
  assert gan_trainer.train_and_evaluate(config, str(work_dir))["step"] == 80


def test_a_replay_override_typo_suggests_the_key(case_dir):
  result = _command("jgen.replay", f"--case={case_dir}", "--override=config.sampler.knd=x")
  line = _one_error_line(result, "jgen.replay")
  assert "Did you mean config.sampler.kind?" in line


# --- issue 18: the workdir's own faults ------------------------------------------------------


def _snapshot(work_dir, names=("metrics.jsonl", "trace/steps.u32", "trace/parts.jsonl")) -> dict:
  """The bytes of each history file (None where it is absent)."""
  contents = {}
  for name in names:
    path = os.path.join(work_dir, name)
    contents[name] = open(path, "rb").read() if os.path.exists(path) else None
  return contents


def _parts_rows(work_dir) -> list[dict]:
  return jsonl.read_rows(os.path.join(work_dir, "trace", "parts.jsonl"))


def _one_line(error) -> str:
  text = str(error)
  assert "\n" not in text and "Traceback" not in text, text
  return text


@pytest.mark.parametrize("how", ["missing", "a file", "all damaged"])
def test_history_without_a_visible_checkpoint_is_refused_and_kept(straight, tmp_path, how):
  work_dir = _copy(straight, tmp_path)
  folder = os.path.join(work_dir, "checkpoints")
  if how == "all damaged":
    for step in (20, 40, 60):
      _flip_bits(_largest_data_file(os.path.join(folder, str(step))))
    with pytest.raises(checkpoints.CheckpointError):  # sets them aside
      gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  else:
    shutil.rmtree(folder)
    if how == "a file":
      open(folder, "w").write("in the way")
  history = _snapshot(work_dir)
  with pytest.raises(RuntimeError) as info:
    gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  line = _one_line(info.value)
  assert "metrics.jsonl" in line and "through step 60" in line and "new --workdir" in line, line
  assert _snapshot(work_dir) == history  # nothing truncated
  if how == "a file":
    assert open(folder).read() == "in the way"
  elif how == "missing":
    assert not os.path.exists(folder)


def test_a_loss_non_finite_before_the_first_row_is_the_one_line_message(tmp_path):
  from jgen.collapse import recorder

  work_dir = str(tmp_path / "run")
  config = tiny_config(setd=True, **{"optimizer.learning_rate": 1e12})
  with pytest.raises(loop.NonFiniteError) as info:
    gan_trainer.train_and_evaluate(config, work_dir)
  line = _one_line(info.value)
  assert line.startswith("non-finite loss at step ") and "recorded in" in line, line
  cases = recorder.list_cases(work_dir)
  assert cases and all(case["status"] == "complete" for case in cases)


def _full_disk_at(monkeypatch, suffix: str):
  """Writes through jsonl.replace_bytes of a file ending in `suffix` fail as on a full disk."""
  real = jsonl.replace_bytes

  def full(path, data):
    if str(path).endswith(suffix):
      raise OSError(28, "No space left on device", str(path))
    return real(path, data)

  monkeypatch.setattr(jsonl, "replace_bytes", full)


def test_a_full_disk_writing_a_digests_record_is_one_line(straight, tmp_path, monkeypatch):
  work_dir = str(tmp_path / "run")
  _full_disk_at(monkeypatch, f"40{checkpoints.DIGESTS_SUFFIX}")
  with pytest.raises(RuntimeError) as info:
    gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  line = _one_line(info.value)
  assert f"40{checkpoints.DIGESTS_SUFFIX}" in line and "No space left on device" in line, line
  assert "checkpoint is step 20" in line, line
  monkeypatch.undo()
  gan_trainer.train_and_evaluate(tiny_config(), work_dir)  # nothing lost: resumes from 20
  _assert_same_run(work_dir, straight)


def test_a_full_disk_appending_a_row_is_one_line(straight, tmp_path, monkeypatch):
  work_dir = str(tmp_path / "run")

  class HalfWritten:
    def __init__(self, path, mode):
      self._file = open(path, mode)

    def write(self, text):
      self._file.write(text[: len(text) // 2])
      raise OSError(28, "No space left on device")

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      self._file.close()

  appended = []

  def full_at_40(path, mode="r", *args, **kwargs):
    if str(path).endswith("metrics.jsonl") and mode == "a":
      appended.append(path)
      if len(appended) == 2:
        return HalfWritten(path, mode)
    return open(path, mode, *args, **kwargs)

  monkeypatch.setattr(workdir, "open", full_at_40, raising=False)
  with pytest.raises(RuntimeError) as info:
    gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  line = _one_line(info.value)
  assert "metrics.jsonl" in line and "No space left on device" in line, line
  monkeypatch.undo()
  gan_trainer.train_and_evaluate(tiny_config(), work_dir)  # the half row is dropped
  _assert_same_run(work_dir, straight)


def _tmpfs(path, size: str) -> bool:
  os.makedirs(path, exist_ok=True)
  if os.geteuid() != 0 or not shutil.which("mount"):
    return False
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
  return result.returncode == 0


def test_a_real_full_disk_is_one_line_without_background_tracebacks(straight, tmp_path):
  disk = tmp_path / "disk"
  if not _tmpfs(disk, "200k"):
    pytest.skip("a tiny file system needs root and mount (tmpfs)")
  try:
    work_dir = str(disk / "run")
    command = ["jgen.main", "--config=configs/gan.py", f"--workdir={work_dir}"]
    result = _command(*command, *_cli_flags({"train.num_steps": 60}))
    shutil.copytree(work_dir, tmp_path / "copy")
  finally:
    subprocess.run(["umount", str(disk)])
  stderr = result.stderr
  assert result.returncode == 1, stderr[-3000:]
  assert "Traceback" not in stderr and "Event loop is closed" not in stderr, stderr[-3000:]
  last = stderr.strip().splitlines()[-1]
  assert last.startswith("jgen.main: error: ") and work_dir in last, last
  gan_trainer.train_and_evaluate(tiny_config(), str(tmp_path / "copy"))  # nothing lost
  _assert_same_run(tmp_path / "copy", straight)


def test_a_damaged_fingerprint_is_damage_not_another_run(straight, tmp_path, caplog):
  work_dir = _copy(straight, tmp_path)
  path = os.path.join(work_dir, "checkpoints", f"60{checkpoints.DIGESTS_SUFFIX}")
  record = json.load(open(path))
  record["fingerprint"]["config"]["seed"] += 1  # one flipped bit of the record
  open(path, "w").write(json.dumps(record, indent=1))
  gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  lines = [r.getMessage() for r in caplog.records if "Checkpoint at step 60" in r.getMessage()]
  assert len(lines) == 1 and "fingerprint" in lines[0] and "set aside" in lines[0], caplog.text
  assert "Resuming from step 40, the newest intact checkpoint." in caplog.text
  assert os.path.exists(os.path.join(work_dir, checkpoints.DAMAGED_DIR, "60"))
  _assert_same_run(work_dir, straight)


def _read_only(work_dir, monkeypatch) -> None:
  """Makes `work_dir` read-only; for root (whom modes do not stop) opens for writing fail too."""
  for folder, _, names in os.walk(work_dir):
    for name in names:
      os.chmod(os.path.join(folder, name), 0o444)
    os.chmod(folder, 0o555)
  real_open = os.open
  inside = os.path.abspath(work_dir) + os.sep

  def refused(path, flags, *args, **kwargs):
    writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
    if writes and os.path.abspath(path).startswith(inside):
      raise PermissionError(13, "Permission denied", path)
    return real_open(path, flags, *args, **kwargs)

  if os.geteuid() == 0:
    monkeypatch.setattr(os, "open", refused)


def test_a_read_only_workdir_is_one_line(straight, tmp_path, monkeypatch):
  work_dir = _copy(straight, tmp_path)
  history = _snapshot(work_dir)
  _read_only(work_dir, monkeypatch)
  try:
    with pytest.raises(RuntimeError) as info:
      gan_trainer.train_and_evaluate(tiny_config(**{"train.num_steps": 80}), work_dir)
  finally:
    monkeypatch.undo()
    for folder, _, _ in os.walk(work_dir):
      os.chmod(folder, 0o755)
  line = _one_line(info.value)
  assert "run.lock" in line and "Permission denied" in line and "writable" in line, line
  assert _snapshot(work_dir) == history


def test_a_workdir_deleted_mid_run_is_one_line(tmp_path, monkeypatch):
  from jgen.run import trace

  work_dir = str(tmp_path / "run")
  real_append = trace.TraceLog.append_parts

  def deleting(self, step, parts):
    while step == 20 and os.path.exists(work_dir):  # orbax may still be writing into it
      shutil.rmtree(work_dir, ignore_errors=True)
    return real_append(self, step, parts)

  monkeypatch.setattr(trace.TraceLog, "append_parts", deleting)
  with pytest.raises(RuntimeError) as info:
    gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  line = _one_line(info.value)
  assert work_dir in line and "deleted" in line, line


def test_random_bytes_in_config_json_are_named_and_the_run_resumes(straight, tmp_path, caplog):
  work_dir = _copy(straight, tmp_path)
  path = os.path.join(work_dir, "config.json")
  open(path, "wb").write(np.random.default_rng(0).bytes(300))
  final = gan_trainer.train_and_evaluate(tiny_config(**{"train.num_steps": 80}), work_dir)
  assert final["step"] == 80
  lines = [r.getMessage() for r in caplog.records if "config.json" in r.getMessage()]
  assert len(lines) == 1 and path in lines[0] and "\n" not in lines[0], caplog.text
  assert "rewritten" in lines[0]


def test_an_undecodable_byte_in_metrics_jsonl_names_the_file_and_line(straight, tmp_path):
  work_dir = _copy(straight, tmp_path)
  path = os.path.join(work_dir, "metrics.jsonl")
  data = bytearray(open(path, "rb").read())
  second = data.index(b"\n") + 5
  data[second] = 0xFF
  open(path, "wb").write(bytes(data))
  with pytest.raises(ValueError) as info:
    gan_trainer.train_and_evaluate(tiny_config(**{"train.num_steps": 80}), work_dir)
  line = _one_line(info.value)
  assert f"{path}, line 2," in line and "UTF-8" in line and "line 2" in line, line
  assert "delete it" not in line
  assert open(path, "rb").read() == bytes(data)


def _stop_after(monkeypatch, chunks: int) -> None:
  """A SIGTERM arrives during the `chunks`-th chunk (the loop asks after every chunk)."""
  asked = []

  def should_stop(self):
    asked.append(1)
    if len(asked) >= chunks:
      self.signal_name = "SIGTERM"
    return self.signal_name is not None

  monkeypatch.setattr(signals.StopRequests, "should_stop", should_stop)


def _stopped_at_30(tmp_path, monkeypatch) -> str:
  work_dir = str(tmp_path / "run")
  _stop_after(monkeypatch, 3)  # chunks of 10 steps: the stop comes at step 30, between rows
  with pytest.raises(signals.StopRequested, match="at step 30 "):
    gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  monkeypatch.undo()
  assert os.path.exists(os.path.join(work_dir, "checkpoints", f"30{checkpoints.WINDOW_SUFFIX}"))
  return work_dir


def test_a_truncated_window_is_set_aside_like_a_damaged_checkpoint(
  straight, tmp_path, monkeypatch, caplog
):
  work_dir = _stopped_at_30(tmp_path, monkeypatch)
  window = os.path.join(work_dir, "checkpoints", f"30{checkpoints.WINDOW_SUFFIX}")
  os.truncate(window, os.path.getsize(window) // 2)
  gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  lines = [r.getMessage() for r in caplog.records if "Checkpoint at step 30" in r.getMessage()]
  assert len(lines) == 1 and window in lines[0] and "set aside" in lines[0], caplog.text
  assert "Resuming from step 20, the newest intact checkpoint." in caplog.text
  damaged = os.path.join(work_dir, checkpoints.DAMAGED_DIR)
  assert os.path.exists(os.path.join(damaged, f"30{checkpoints.WINDOW_SUFFIX}"))
  _assert_same_run(work_dir, straight)


def test_the_window_is_written_atomically(tmp_path, monkeypatch):
  written = []
  real = jsonl.replace_bytes
  monkeypatch.setattr(jsonl, "replace_bytes", lambda p, d: (written.append(str(p)), real(p, d)))
  _stopped_at_30(tmp_path, monkeypatch)
  assert any(p.endswith(f"30{checkpoints.WINDOW_SUFFIX}") for p in written), written


def test_an_emptied_metrics_jsonl_is_a_warning_naming_what_was_lost(straight, tmp_path, caplog):
  work_dir = _copy(straight, tmp_path)
  path = os.path.join(work_dir, "metrics.jsonl")
  open(path, "w").close()
  gan_trainer.train_and_evaluate(tiny_config(**{"train.num_steps": 80}), work_dir)
  lines = [r.getMessage() for r in caplog.records if path in r.getMessage()]
  assert len(lines) == 1 and "\n" not in lines[0], caplog.text
  assert "up to step 60" in lines[0] and "delete" not in lines[0], lines[0]
  assert [row["step"] for row in _rows(work_dir)] == [80]


def test_parts_jsonl_after_a_resume_from_step_0_is_an_uninterrupted_runs(
  straight, tmp_path, monkeypatch
):
  work_dir = str(tmp_path / "run")

  def killed(self, row):
    raise KeyboardInterrupt  # before the first row: only the step-0 checkpoint is on disk

  monkeypatch.setattr(workdir.MetricsLog, "write", killed)
  with pytest.raises(KeyboardInterrupt):
    gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  monkeypatch.undo()
  assert checkpoints.Checkpoints(work_dir, keep=3).all_steps() == [0]
  gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  _assert_same_run(work_dir, straight)
  assert _parts_rows(work_dir) == _parts_rows(straight)


def test_parts_jsonl_after_a_stop_between_rows_is_an_uninterrupted_runs(
  straight, tmp_path, monkeypatch
):
  work_dir = _stopped_at_30(tmp_path, monkeypatch)
  gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  _assert_same_run(work_dir, straight)
  assert _parts_rows(work_dir) == _parts_rows(straight)


def test_nan_in_the_config_equals_nan():
  config = tiny_config(**{"optimizer.learning_rate": float("nan")})
  stored = json.loads(json.dumps(config.to_dict()))  # as config.json holds it
  assert workdir.config_differences(stored, config.to_dict()) == []
  recorded = json.loads(json.dumps(fingerprint.fingerprint(config)))  # as S.digests.json
  assert fingerprint.differences(recorded, fingerprint.fingerprint(config)) == []


def test_rewritten_files_get_the_mode_of_a_normally_created_file(tmp_path):
  old_umask = os.umask(0o027)
  try:
    fresh = tmp_path / "fresh.json"
    jsonl.replace_bytes(fresh, b"{}")
    assert os.stat(fresh).st_mode & 0o777 == 0o640
    kept = tmp_path / "kept.json"
    kept.write_bytes(b"old")
    os.chmod(kept, 0o604)
    jsonl.replace_bytes(kept, b"new")
    assert os.stat(kept).st_mode & 0o777 == 0o604 and kept.read_bytes() == b"new"
  finally:
    os.umask(old_umask)


def test_stale_temporary_files_are_removed_at_start(straight, tmp_path):
  work_dir = _copy(straight, tmp_path)
  stale = [
    os.path.join(work_dir, ".metrics.jsonl.k2x9_a0q.tmp"),
    os.path.join(work_dir, "trace", ".parts.jsonl.abcdefgh.tmp"),
    os.path.join(work_dir, "checkpoints", ".60.digests.json.0a1b2c3d.tmp"),
    os.path.join(work_dir, "cases", "00000040-diversity", ".case.json.a_b_c_d_.tmp"),
  ]
  os.makedirs(os.path.dirname(stale[-1]))
  others = [os.path.join(work_dir, "notes.tmp"), os.path.join(work_dir, ".metrics.jsonl.tmp")]
  for path in stale + others:
    open(path, "w").write("x")
  gan_trainer.train_and_evaluate(tiny_config(**{"train.num_steps": 80}), work_dir)
  assert [os.path.exists(p) for p in stale] == [False] * len(stale)
  assert [os.path.exists(p) for p in others] == [True] * len(others)


_BACKGROUND_NOISE = """
import asyncio, gc, os, sys
import orbax.checkpoint  # the modules whose coroutines are recognised by name
from jgen.run import save_noise

folder, whose = sys.argv[1], sys.argv[2]
save_noise.quiet_background_errors(folder)
if whose == "a save's":  # orbax's code, failing to write under the checkpoints folder
  namespace = {}
  source = "async def async_serialize_from_host():\\n  raise ValueError('No space left')\\n"
  where = os.path.join(os.sep, "site-packages", "orbax", "checkpoint", "serialization.py")
  exec(compile(source, where, "exec"), namespace)
  raising = namespace["async_serialize_from_host"]
  written = os.path.join(folder, "20.orbax-checkpoint-tmp", "d", "0")
else:
  async def raising():
    raise ValueError("mine")
  written = os.path.join(os.sep, "elsewhere", "d", "0")

async def fail_unretrieved():
  for future in (asyncio.ensure_future(raising()), asyncio.gather(raising())):
    while not future.done():
      await asyncio.sleep(0)
  future = asyncio.get_running_loop().create_future()  # as TensorStore's: no Python traceback
  future.set_exception(ValueError(f"Error writing {written}: No space left on device"))

loop = asyncio.new_event_loop()
loop.run_until_complete(fail_unretrieved())
gc.collect()
never_awaited = raising()  # collected at exit
"""
REPORTS = (
  "Task exception was never retrieved",
  "_GatheringFuture exception was never retrieved",
  "Future exception was never retrieved",
  "was never awaited",
)


@pytest.mark.parametrize("whose,debug", [("a save's", ""), ("a save's", "1"), ("mine", "")])
def test_a_failed_saves_background_errors_stay_off_stderr_and_others_do_not(tmp_path, whose, debug):
  """What a failed save leaves behind (seen in full-disk runs, each a race): an orbax Task and
  gathering future, a TensorStore future naming a file under the checkpoints folder, and an
  orbax coroutine never awaited at exit. Kept off stderr; any other such report shows, and with
  JGEN_DEBUG=1 every one does."""
  folder = str(tmp_path / "run" / "checkpoints")
  env = {**os.environ, "JGEN_DEBUG": debug}
  command = [sys.executable, "-c", _BACKGROUND_NOISE, folder, whose]
  result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  shown = [report for report in REPORTS if report in result.stderr]
  if whose == "a save's" and not debug:
    assert result.stderr == ""
  else:
    assert shown == list(REPORTS), result.stderr[-3000:]
