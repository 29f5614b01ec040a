"""Studies and pictures that survive: each fault is first produced on disk, then the
study (or the picture) shows what it does now: nothing lost, one line naming the file and the
fix, and a resumed study whose cells equal an uninterrupted one's.

Faults: a rerun with another config (a missing cell would have trained with it); a record that
lacks keys the config has; a damaged study_config.json; SIGTERM and SIGINT during a cell's last
chunk; a full disk under every picture writer, under a study's report and under a run's
evaluation; an outcome.json holding binary, `{}` or a list.
"""

import builtins
import errno
import json
import logging
import os
import shutil
import signal

import numpy as np
import pytest
from conftest import tiny_config
from test_study import tiny_study

from jgen.core import jsonl
from jgen.data.mixtures import get_mixture
from jgen.run import loop, signals
from jgen.studies import sampling_order as study
from jgen.trainers import gan as gan_trainer
from jgen.viz import imgrid, plots

FIRST, SECOND = "ring8-per_sample-adam-epoch_shuffle", "ring8-per_sample-adam-with_replacement"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """An uninterrupted two-cell study: the reference of every rerun."""
  work_dir = tmp_path_factory.mktemp("finished")
  study.run_study(tiny_study(), str(work_dir))
  return work_dir


def _copy(finished, tmp_path) -> str:
  work_dir = tmp_path / "study"
  shutil.copytree(finished, work_dir)
  return str(work_dir)


def _file(*parts) -> bytes:
  with open(os.path.join(*parts), "rb") as f:
    return f.read()


def _cell_rows(work_dir, cell) -> list[dict]:
  rows = jsonl.read_rows(os.path.join(work_dir, "cells", cell, "metrics.jsonl"))
  return [{k: v for k, v in row.items() if k != "steps_per_sec"} for row in rows]


def _assert_same_study(work_dir, reference) -> None:
  """Every cell's rows (digests included, speed left out), outcome and the report are equal."""
  for cell in (FIRST, SECOND):
    assert _cell_rows(work_dir, cell) == _cell_rows(reference, cell)
    assert _file(work_dir, "cells", cell, "outcome.json") == _file(
      reference, "cells", cell, "outcome.json"
    )
  assert _file(work_dir, "report.json") == _file(reference, "report.json")


def _files(work_dir) -> dict[str, bytes]:
  """Every file under `work_dir`, by its path there: what a refusal must leave as it was."""
  return {
    os.path.relpath(os.path.join(folder, name), work_dir): _file(folder, name)
    for folder, _, names in os.walk(work_dir)
    for name in names
  }


def _no_training(monkeypatch):
  def refuse(config, work_dir):
    raise AssertionError(f"trained {work_dir}")

  monkeypatch.setattr(gan_trainer, "train_and_evaluate", refuse)


def _one_line(message: str) -> str:
  assert "\n" not in message, message
  return message


# --- a changed config ------------------------------------------------------------------------


def test_a_rerun_with_another_config_is_refused_naming_the_keys(finished, tmp_path, monkeypatch):
  work_dir = _copy(finished, tmp_path)
  shutil.rmtree(os.path.join(work_dir, "cells", SECOND))  # a cell still to train
  before = _files(work_dir)
  changed = tiny_study(population=3)
  changed.base.train.num_steps = 60
  with pytest.raises(ValueError) as info:
    study.run_study(changed, work_dir)
  message = _one_line(str(info.value))
  assert message.startswith(os.path.join(work_dir, "study_config.json")), message
  assert "base.train.num_steps: 40 -> 60; study.population: 2 -> 3" in message
  assert message.endswith("Use a new --workdir, or undo the change")
  assert _files(work_dir) == before  # nothing trained, nothing written
  # What cannot change a cell's results may change: checkpoints kept, steps per dispatch, and
  # the grid (here one sampler fewer: nothing to train).
  allowed = tiny_study(samplers="epoch_shuffle")
  allowed.base.train.keep_checkpoints = 1
  allowed.base.train.steps_per_dispatch = 10
  _no_training(monkeypatch)
  report = study.run_study(allowed, work_dir)
  assert [cell["sampler"] for cell in report["blocks"][0]["cells"]] == ["epoch_shuffle"]


def test_a_record_lacking_the_grids_settings_resumes_when_its_cells_were_trained_with_them(
  finished, tmp_path, monkeypatch
):
  """A config may gain keys (here the settings each name of the grid stands for): the cells on
  disk show what they were trained with, so the record gains the keys if they agree."""
  work_dir = _copy(finished, tmp_path)
  path = os.path.join(work_dir, "study_config.json")
  record = json.loads(_file(path))
  del record["study"]["settings"]
  with open(path, "w") as f:
    json.dump(record, f)
  before = _files(work_dir)
  changed = tiny_study()
  changed.study.settings.optimizers.adam.optimizer.learning_rate = 2e-4
  with pytest.raises(ValueError) as info:
    study.run_study(changed, work_dir)
  message = _one_line(str(info.value))
  assert (
    f"(cells on disk trained otherwise: {FIRST} (optimizer.learning_rate: 0.0001 -> 0.0002)"
    in (message)
  )
  assert _files(work_dir) == before
  _no_training(monkeypatch)
  study.run_study(tiny_study(), work_dir)
  assert json.loads(_file(path)) == json.loads(json.dumps(tiny_study().to_dict()))
  _assert_same_study(work_dir, finished)


@pytest.mark.parametrize("content", [b"\x80\x81\xfe", b"[1, 2]", b'{"study": '])
def test_a_damaged_study_config_is_refused_in_one_line(finished, tmp_path, content):
  work_dir = _copy(finished, tmp_path)
  path = os.path.join(work_dir, "study_config.json")
  with open(path, "wb") as f:
    f.write(content)
  with pytest.raises(ValueError) as info:
    study.run_study(tiny_study(), work_dir)
  message = _one_line(str(info.value))
  assert message.startswith(f"{path} is damaged (") and "delete it to resume" in message
  assert _file(path) == content


# --- a signal during a cell's last chunk -----------------------------------------------------


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_a_cells_last_chunk_stops_the_study_after_that_cell(
  finished, tmp_path, monkeypatch, signal_number
):
  handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
  real_chunk, chunks = loop.run_chunk, []

  def signal_in_the_last_chunk(*args, **kwargs):
    result = real_chunk(*args, **kwargs)
    chunks.append(1)
    if len(chunks) == 2:  # 40 steps in chunks of 20: the first cell's last chunk
      signal.raise_signal(signal_number)
    return result

  monkeypatch.setattr(loop, "run_chunk", signal_in_the_last_chunk)
  work_dir = str(tmp_path / "study")
  with pytest.raises(signals.StopRequested) as info:
    study.run_study(tiny_study(), work_dir)
  name = signal.Signals(signal_number).name
  outcome = os.path.join(work_dir, "cells", FIRST, "outcome.json")
  assert _one_line(str(info.value)) == (
    f"stopped by {name} after cell 1 of 2 ({FIRST}): its outcome is saved in {outcome}; "
    "rerun the same command to resume"
  )
  assert info.value.exit_code == signals.EXIT_STOPPED == 75
  assert not os.path.exists(os.path.join(work_dir, "cells", SECOND))
  assert {number: signal.getsignal(number) for number in handlers} == handlers
  monkeypatch.undo()
  study.run_study(tiny_study(), work_dir)
  _assert_same_study(work_dir, finished)


# --- a full disk under a picture -------------------------------------------------------------


class _FullDiskFile:
  """A file opened for writing on a full disk: opening works (and truncates), writing fails."""

  def __init__(self, file):
    self._file = file

  def write(self, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  def __getattr__(self, name):
    return getattr(self._file, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._file.close()


def _full_disk(monkeypatch, name_part: str = ".png") -> None:
  """Every write to a file whose name holds `name_part` fails with ENOSPC, whether it is opened
  by name (matplotlib, Pillow) or from a descriptor (a temporary file of jsonl.replace_bytes)."""
  real_open, real_fdopen = builtins.open, os.fdopen

  def writing(mode) -> bool:
    return any(flag in mode for flag in "wax+")

  def picked(path) -> bool:
    return name_part in os.path.basename(os.fspath(path))

  def open_(file, mode="r", *args, **kwargs):
    opened = real_open(file, mode, *args, **kwargs)
    named = isinstance(file, str | os.PathLike)
    return _FullDiskFile(opened) if named and writing(mode) and picked(file) else opened

  def fdopen(fd, mode="r", *args, **kwargs):
    path = os.readlink(f"/proc/self/fd/{fd}")
    opened = real_fdopen(fd, mode, *args, **kwargs)
    return _FullDiskFile(opened) if writing(mode) and picked(path) else opened

  monkeypatch.setattr(builtins, "open", open_)
  monkeypatch.setattr(os, "fdopen", fdopen)


def _grey_images():
  return np.linspace(0.0, 1.0, 4 * 8 * 8).reshape(4, 8, 8, 1)


ring8 = get_mixture("ring8")
WRITERS = {
  "scatter_samples": lambda path: plots.scatter_samples(path, np.zeros((10, 2)), ring8, "t"),
  "metric_curves": lambda path: plots.metric_curves(path, [{"step": 1, "loss": 0.5}], ["loss"]),
  "compare_branches": lambda path: plots.compare_branches(
    path, {"recorded": [{"step": 1, "loss": 0.5}]}, ["loss"]
  ),
  "image_grid": lambda path: plots.image_grid(path, _grey_images(), "t"),
  "save_grid": lambda path: imgrid.save_grid(path, [list(_grey_images())], ["row"], "t"),
  "save_image": lambda path: imgrid.save_image(path, _grey_images()[0]),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_full_disk_under_a_picture_is_one_line_and_keeps_the_old_picture(
  tmp_path, monkeypatch, writer
):
  path = tmp_path / "picture.png"
  path.write_bytes(b"the previous picture")
  _full_disk(monkeypatch)
  with pytest.raises(RuntimeError) as info:
    WRITERS[writer](str(path))
  assert isinstance(info.value, plots.PictureError)  # a RuntimeError: one line from a command
  message = _one_line(str(info.value))
  assert message.startswith(f"cannot write the picture {path} (OSError: [Errno 28] No space")
  assert message.endswith(
    "free disk space (or fix the folder's permissions) and rerun the same command"
  )
  assert path.read_bytes() == b"the previous picture"
  assert os.listdir(tmp_path) == ["picture.png"]  # no temporary file left
  monkeypatch.undo()
  WRITERS[writer](str(path))
  assert path.read_bytes().startswith(b"\x89PNG")


def test_a_full_disk_under_a_studys_report_loses_nothing(finished, tmp_path, monkeypatch):
  work_dir = _copy(finished, tmp_path)
  pictures = {name: _file(work_dir, name) for name in os.listdir(work_dir) if name.endswith(".png")}
  assert set(pictures) == {"collapse_rate.png", "modes_over_time.png"}
  _no_training(monkeypatch)
  _full_disk(monkeypatch)
  with pytest.raises(RuntimeError) as info:
    study.run_study(tiny_study(), work_dir)
  assert os.path.join(work_dir, "collapse_rate.png") in _one_line(str(info.value))
  assert {name: _file(work_dir, name) for name in pictures} == pictures
  monkeypatch.undo()
  _no_training(monkeypatch)
  study.run_study(tiny_study(), work_dir)  # the outcomes were kept: the report is rebuilt
  _assert_same_study(work_dir, finished)


def test_a_full_disk_under_a_runs_picture_stops_it_in_one_line_and_it_resumes(
  tmp_path, monkeypatch
):
  reference = str(tmp_path / "straight")
  gan_trainer.train_and_evaluate(tiny_config(), reference)
  work_dir = str(tmp_path / "run")
  _full_disk(monkeypatch, "step_00000040")
  with pytest.raises(RuntimeError) as info:
    gan_trainer.train_and_evaluate(tiny_config(), work_dir)
  picture = os.path.join(work_dir, "samples", "step_00000040.png")
  assert _one_line(str(info.value)).startswith(f"cannot write the picture {picture} (")
  monkeypatch.undo()
  gan_trainer.train_and_evaluate(tiny_config(), work_dir)  # resumes from step 20
  rows = jsonl.read_rows(os.path.join(work_dir, "metrics.jsonl"))
  expected = jsonl.read_rows(os.path.join(reference, "metrics.jsonl"))
  assert [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in rows] == [
    {k: v for k, v in r.items() if k != "steps_per_sec"} for r in expected
  ]
  assert _file(work_dir, "trace", "steps.u32") == _file(reference, "trace", "steps.u32")


# --- a damaged outcome -----------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"\x80\x81\xfe\x00", b"{}", b"[1, 2]"])
def test_a_damaged_outcome_reruns_its_cell_with_a_warning_naming_it(
  finished, tmp_path, monkeypatch, caplog, content
):
  work_dir = _copy(finished, tmp_path)
  path = os.path.join(work_dir, "cells", FIRST, "outcome.json")
  with open(path, "wb") as f:
    f.write(content)
  real_train, trained = gan_trainer.train_and_evaluate, []
  monkeypatch.setattr(
    gan_trainer,
    "train_and_evaluate",
    lambda c, w: trained.append(os.path.basename(w)) or real_train(c, w),
  )
  with caplog.at_level(logging.WARNING):
    study.run_study(tiny_study(), work_dir)
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  (warning,) = [w for w in warnings if path in w]
  assert _one_line(warning).startswith(f"{path} is damaged (")
  assert warning.endswith("the cell runs again from its checkpoints.")
  assert trained == [FIRST]  # from its final checkpoint: no step trained again
  _assert_same_study(work_dir, finished)
  assert json.loads(_file(path))["outcomes"]
