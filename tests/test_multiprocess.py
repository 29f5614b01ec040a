"""Multi-process runs on this machine: 2 processes x 2 fake CPU devices against 1 process x 4.

launch/local_processes.sh starts the processes (a coordinator on 127.0.0.1, collectives through
gloo); jgen.main with XLA_FLAGS=--xla_force_host_platform_device_count=4 is the one-process
twin. Both see the same 4-device mesh, so the same program runs, split differently.
"""

import json
import os
import signal
import subprocess
import sys
import time

import conftest
import numpy as np
import pytest

from jgen.core import jsonl
from jgen.run import signals

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = {  # tests/conftest.py's tiny_config on the command line
  "data.num_train": 1000,
  "model.generator.width": 32,
  "model.generator.depth": 2,
  "model.discriminator.width": 32,
  "model.discriminator.depth": 2,
  "train.batch_size": 32,
  "train.steps_per_dispatch": 10,
  "train.log_every": 20,
  "train.eval_every": 1000,
  "train.checkpoint_every": 20,
  "eval.num_samples": 500,
}


def _flags(**overrides) -> list[str]:
  values = {**TINY, **{key.replace("__", "."): value for key, value in overrides.items()}}
  return ["--config=configs/gan.py", *(f"--config.{k}={v}" for k, v in values.items())]


def _one_process(work_dir, **overrides) -> subprocess.Popen:
  env = {
    **os.environ,
    "XLA_FLAGS": conftest.xla_flags_with("--xla_force_host_platform_device_count=4"),
  }
  command = [sys.executable, "-m", "jgen.main", f"--workdir={work_dir}", *_flags(**overrides)]
  return subprocess.Popen(
    command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
  )


def _two_processes(work_dir, **overrides) -> subprocess.Popen:
  flags = _flags(**overrides)
  command = ["bash", "launch/local_processes.sh", "2", flags[0].split("=", 1)[1], str(work_dir)]
  # A survivor blocked in a collective on a killed process is killed 2 s after it, not the
  # default 10: how long the script waits is not what a test here checks.
  env = {**os.environ, "JGEN_DEVICES_PER_PROCESS": "2", "JGEN_KILL_AFTER_SECONDS": "2"}
  return subprocess.Popen(
    [*command, *flags[1:]],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    start_new_session=True,  # a signal to the script alone, as a scheduler sends it
  )


def _finish(process: subprocess.Popen, timeout=300) -> tuple[int, list[dict], str]:
  """(exit code, the final rows printed, stderr without the gloo and INFO noise)."""
  out, err = process.communicate(timeout=timeout)
  rows = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
  lines = [line for line in err.decode().splitlines() if line.startswith(("jgen", "local_"))]
  return process.returncode, rows, "\n".join(lines)


def _wait_for_rows(work_dir, count: int, process: subprocess.Popen, timeout=240) -> None:
  path = os.path.join(work_dir, "metrics.jsonl")
  deadline = time.time() + timeout
  while time.time() < deadline and process.poll() is None:
    if os.path.exists(path) and len(jsonl.read_rows(path)) >= count:
      return
    time.sleep(0.05)
  raise AssertionError(f"no {count} rows in {path}: {_finish(process, 10)}")


def _rows(work_dir) -> list[dict]:
  return jsonl.read_rows(os.path.join(work_dir, "metrics.jsonl"))


def _without_speed(row: dict) -> dict:
  return {k: v for k, v in row.items() if k != "steps_per_sec"}


def _trace(work_dir) -> np.ndarray:
  words = np.fromfile(os.path.join(work_dir, "trace", "steps.u32"), np.uint32)
  return words.reshape(-1, 4)  # step, indices, g_params, d_params


def test_a_population_sharded_over_two_processes_stops_together_and_resumes_bit_identically(
  tmp_path,
):
  """4 members, one per device, 2 per process: no collective in the step, so the two layouts
  compute the same bits. SIGTERM stops both processes at one step; the same two resume."""
  work_dir = tmp_path / "2x2"
  stopped = _two_processes(work_dir, population__size=4, train__num_steps=100_000)
  _wait_for_rows(work_dir, 1, stopped)
  os.kill(stopped.pid, signal.SIGTERM)
  code, _, messages = _finish(stopped)
  assert code == signals.EXIT_STOPPED, messages
  stops = [line for line in messages.splitlines() if "stopped by SIGTERM at step" in line]
  assert len(stops) == 2 and stops[0] == stops[1], messages  # both processes, the same step
  step = int(stops[0].split(" at step ")[1].split()[0])
  num_steps = max(100, step - step % 20 + 40)
  reference = _one_process(tmp_path / "1x4", population__size=4, train__num_steps=num_steps)
  resumed = _two_processes(work_dir, population__size=4, train__num_steps=num_steps)
  code, finals, messages = _finish(resumed)
  assert code == 0, messages
  ref_code, (ref_final,), ref_messages = _finish(reference)
  assert ref_code == 0, ref_messages
  assert len(finals) == 2 and _without_speed(finals[0]) == _without_speed(finals[1])
  assert _without_speed(finals[0]) == _without_speed(ref_final)
  rows, ref_rows = _rows(work_dir), _rows(tmp_path / "1x4")
  assert [r["step"] for r in rows] == [r["step"] for r in ref_rows]  # each row written once
  assert [_without_speed(r) for r in rows] == [_without_speed(r) for r in ref_rows]
  assert len(rows[-1]["member_digests"]) == 4  # (a population's run keeps no per-step trace)
  names = os.listdir(work_dir / "checkpoints")
  saved = sorted(int(n) for n in names if n.isdigit())
  assert saved == sorted(set(range(0, num_steps + 1, 20)) | {step})[-3:]  # the newest 3, once
  assert sorted(n for n in names if n.endswith(".digests.json")) == sorted(
    f"{s}.digests.json" for s in saved
  )


def test_data_parallel_two_processes_compute_the_bits_of_one_and_a_killed_process_ends_both(
  tmp_path,
):
  """One model, its batch split over 4 devices in 2 processes. With config.deterministic (the
  default) every sum over devices goes in mesh order (jgen/core/parallel.py), so every step's
  data order and G and D digests, and every row, equal one process's bit for bit. Killing one
  process ends the other, and the script says which one died."""
  reference = _one_process(tmp_path / "1x4", train__num_steps=60)
  work_dir = tmp_path / "2x2"
  run = _two_processes(work_dir, train__num_steps=100_000)
  _wait_for_rows(work_dir, 2, run)
  find = ["pgrep", "-P", str(run.pid), "-f", "process_id=1"]
  children = subprocess.run(find, capture_output=True)
  (victim,) = [int(pid) for pid in children.stdout.split()]
  os.kill(victim, signal.SIGKILL)
  started = time.time()
  code, _, messages = _finish(run, timeout=120)
  assert code != 0 and time.time() - started < 60
  assert "local_processes: process 1 of 2 ended with signal 9 (KILL); stopping the others" in (
    messages
  )
  assert subprocess.run(["pgrep", "-f", str(work_dir)], capture_output=True).stdout == b""
  ref_code, _, ref_messages = _finish(reference)
  assert ref_code == 0, ref_messages
  rows, ref_rows = _rows(work_dir), {r["step"]: r for r in _rows(tmp_path / "1x4")}
  assert [r["step"] for r in rows][:2] == [20, 40]
  trace, ref_trace = _trace(work_dir), _trace(tmp_path / "1x4")
  count = min(len(trace), len(ref_trace))
  assert count >= 40
  np.testing.assert_array_equal(trace[:count], ref_trace[:count])
  for row in rows[:2]:
    assert _without_speed(row) == _without_speed(ref_rows[row["step"]])


def test_without_config_deterministic_two_processes_drift_from_one(tmp_path):
  """config.deterministic=False leaves the sum over devices to XLA's all-reduce, which gloo
  adds in another order than one process does: the same data order and rows within float32
  rounding, but not the same bits (float addition is not associative)."""
  reference = _one_process(tmp_path / "1x4", deterministic=False, train__num_steps=40)
  run = _two_processes(tmp_path / "2x2", deterministic=False, train__num_steps=40)
  for process in (run, reference):
    code, _, messages = _finish(process)
    assert code == 0, messages
  trace, ref_trace = _trace(tmp_path / "2x2"), _trace(tmp_path / "1x4")
  assert len(trace) == len(ref_trace) == 40
  np.testing.assert_array_equal(trace[:, :2], ref_trace[:, :2])  # the data order
  assert (trace[:, 2:] != ref_trace[:, 2:]).any()  # G's or D's bits differ at some step
  rows, ref_rows = _rows(tmp_path / "2x2"), _rows(tmp_path / "1x4")
  assert [r["step"] for r in rows] == [r["step"] for r in ref_rows] == [20, 40]
  for row, ref_row in zip(rows, ref_rows, strict=True):
    assert row["state_digest"] != ref_row["state_digest"]
    for key in ("d_loss", "g_loss", "d_real_logit", "d_fake_logit"):
      assert row[key] == pytest.approx(ref_row[key], rel=1e-5, abs=1e-6), key
