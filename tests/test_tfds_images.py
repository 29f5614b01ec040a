"""TFDS images by random access, offline: tfds.testing.mock_data, the host (Grain) path, and
the fast failure when nothing is prepared."""

import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from configs import stacked_digits_gan  # noqa: E402
from jgen import datasets  # noqa: E402
from jgen.data import stacked, tfds_source  # noqa: E402
from jgen.trainers import gan as gan_trainer  # noqa: E402


def _config(name, **overrides):
  config = stacked_digits_gan.get_config("runlocal")
  config.unlock()
  config.data.name = name
  config.data.num_train = 48
  config.train.batch_size = 16
  config.train.num_steps = 4
  config.train.steps_per_dispatch = 2
  config.train.log_every = 2
  config.train.eval_every = 4
  config.train.checkpoint_every = 2
  config.eval.num_samples = 64
  for key, value in overrides.items():
    section, leaf = key.split(".")
    config[section][leaf] = value
  return config


def test_mnist_goes_to_the_device_and_trains(tmp_path, monkeypatch):
  # Random mock pixels: no classifier can label them (the MNIST classifier and the modes it
  # gives mnist runs are tests/test_mnist_classifier.py, on digits in MNIST's format).
  monkeypatch.setattr(datasets.ImageDataset, "has_modes", property(lambda self: False))
  with tfds.testing.mock_data(num_examples=48):
    config = _config("mnist")
    data = datasets.get_dataset(config.data).source
    assert isinstance(data, tfds_source.TfdsImages) and not data.on_host
    assert data.sample_shape == (28, 28, 1) and data.images.shape == (48, 28, 28, 1)
    first = gan_trainer.train_and_evaluate(config, str(tmp_path / "a"))
  assert first["step"] == 4 and first["diversity"] > 0
  assert (tmp_path / "a" / "samples" / "step_00000004.png").exists()


def test_large_data_is_read_on_the_host_by_the_exact_index_stream(tmp_path):
  with tfds.testing.mock_data(num_examples=48):
    config = _config("cifar10", **{"data.device_bytes_limit": 0})
    gan, root, _ = gan_trainer.build(config)
    assert gan.data.on_host and gan.data.sample_shape == (32, 32, 3)
    batches = tfds_source.HostBatches(gan.data.source, gan.sample_indices, root, 16, 1, 4, 2)
    for step in (1, 2):  # starts at step 1, as a resume from a checkpoint at step 1 would
      batch = np.asarray(batches.next_batch())
      indices = np.asarray(gan.sample_indices(root, jnp.int32(step)))
      expected = np.stack([gan.data.source.read(i) for i in indices])
      np.testing.assert_array_equal(batch, expected)
    host = gan_trainer.train_and_evaluate(config, str(tmp_path / "host"))
    device = gan_trainer.train_and_evaluate(
      _config("cifar10", **{"data.device_bytes_limit": 1 << 30}), str(tmp_path / "device")
    )
  # The same data order and the same batches: the host path trains exactly like the device path.
  assert host["state_digest"] == device["state_digest"]
  # CIFAR-10 has no mode classifier: samples and diversity, no modes.
  assert "modes" not in host and host["diversity"] > 0


def test_stacked_mnist_stacks_mnist_digits():
  with tfds.testing.mock_data(num_examples=30):
    data = datasets.get_dataset(_config("stacked_mnist").data).source
  assert isinstance(data, stacked.StackedDigits) and data.sample_shape == (28, 28, 3)
  assert data.num_modes == 1000


def test_offline_without_prepared_data_fails_within_seconds(tmp_path):
  start = time.perf_counter()
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "jgen.main",
      "--config=configs/stacked_digits_gan.py:runlocal",
      "--config.data.name=mnist",
      f"--config.data.tfds_data_dir={tmp_path / 'empty'}",
      f"--workdir={tmp_path / 'run'}",
    ],
    capture_output=True,
    text=True,
  )
  elapsed = time.perf_counter() - start
  assert result.returncode == 1
  assert "tfds build mnist --file_format=array_record" in result.stderr
  assert "--config.data.tfds_data_dir" in result.stderr
  assert elapsed < 60  # the process start and imports; the check itself takes ~0.1 s
  assert not (tmp_path / "run" / "checkpoints").exists()
