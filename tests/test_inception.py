"""The standard Inception FID: architecture and conversion against pytorch-fid, file checks, CLI.

Without torch (CI) the tests run on a random-weights file: ~6 GFLOP per 299x299 image, so a few
8x8 images each, and one compiled shape. test_matches_pytorch_fid and test_resize_matches_torch
need torch and pytorch-fid (`pip install jgen[inception]`) and skip without them.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from jgen.evals import inception

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("inception") / "random.npz")
  inception.write_weights(path, inception.random_weights(0))
  return path


@pytest.fixture(scope="module")
def images_4x8x8x3():
  return np.random.default_rng(0).uniform(size=(4, 8, 8, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def features_4xF(weights_path, images_4x8x8x3):
  return inception.inception_features(inception.load_inception(weights_path), images_4x8x8x3, 4)


def test_features_shape_batches_and_grey(weights_path, images_4x8x8x3, features_4xF):
  model = inception.load_inception(weights_path)
  assert inception.load_inception(weights_path) is model  # cached: the trainer reloads freely
  feats = features_4xF
  assert feats.shape == (4, inception.FEATURE_DIM) and feats.dtype == np.float32
  assert np.isfinite(feats).all()
  assert np.abs(feats - feats.mean(0)).max() > 0.1  # different images, different features
  # Grey images are the same image in all three channels; batches of 3 (the last one padded)
  # change nothing but rounding.
  grey = images_4x8x8x3[..., :1]
  np.testing.assert_allclose(
    inception.inception_features(model, grey, batch_size=3),
    inception.inception_features(model, np.repeat(grey, 3, -1), batch_size=4),
    rtol=1e-5,
    atol=1e-5,
  )


def test_fid_is_zero_on_identical_sets_and_grows_with_noise(
  weights_path, images_4x8x8x3, features_4xF
):
  model = inception.load_inception(weights_path)
  real = features_4xF
  noisy = np.clip(images_4x8x8x3 + 0.3 * np.random.default_rng(1).normal(size=(4, 8, 8, 3)), 0, 1)
  same = inception.inception_fid_row(weights_path, real, images_4x8x8x3)["inception_fid"]
  different = inception.inception_fid(model, real, noisy)
  assert abs(same) < 1e-6 * np.sum(real**2) / len(real)
  assert different > 1e-3 * np.sum(real**2) / len(real)


def _write(path, arrays):
  np.savez(path, **arrays)
  return str(path)


def test_bad_weights_files_say_how_to_make_one(tmp_path, weights_path):
  good = dict(np.load(weights_path))
  bad_files = {
    "not found": str(tmp_path / "absent.npz"),
    "cannot read": str(tmp_path / "text.npz"),
    "holds one array": str(tmp_path / "one.npy"),
    "lacks 1 of the 470": _write(
      tmp_path / "lacks.npz", {k: v for k, v in good.items() if k != "Mixed_7c.branch_pool.bn.bias"}
    ),
    "AuxLogits.conv0.conv.weight": _write(
      tmp_path / "extra.npz", {**good, "AuxLogits.conv0.conv.weight": np.zeros(1)}
    ),
    "expected [32, 3, 3, 3]": _write(
      tmp_path / "layout.npz",
      {
        **good,
        "Conv2d_1a_3x3.conv.weight": good["Conv2d_1a_3x3.conv.weight"].transpose(2, 3, 1, 0),
      },
    ),
  }
  (tmp_path / "text.npz").write_text("not a zip")
  np.save(tmp_path / "one.npy", np.zeros(3))
  for message, path in bad_files.items():
    with pytest.raises(inception.InceptionWeightsError) as error:
      inception.load_inception(path)
    assert message in str(error.value)
    assert "python -m jgen.inception_weights --pth=" in str(error.value)
    assert inception.FID_WEIGHTS_URL in str(error.value)
  # A full state_dict dump also loads: the classifier and batch counters are ignored.
  extras = {"fc.weight": np.zeros((1008, 2048)), "Conv2d_1a_3x3.bn.num_batches_tracked": np.ones(1)}
  inception.load_inception(_write(tmp_path / "full.npz", {**good, **extras}))


def _run(module, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  command = [sys.executable, "-m", module, *args]
  return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def test_evaluate_cli_checks_the_flag(tmp_path):
  images = tmp_path / "images.npy"
  np.save(images, np.zeros((5, 8, 8, 3), np.float32))
  missing = tmp_path / "absent.npz"
  result = _run("jgen.evaluate", "--data=stacked_digits", f"--samples={images}",
                f"--inception_weights={missing}")  # fmt: skip
  assert result.returncode == 1 and result.stdout == ""
  assert "Inception weights file not found" in result.stderr
  assert "python -m jgen.inception_weights" in result.stderr and "Traceback" not in result.stderr
  # Points, not images: the command's library refuses the flag before reading anything, with
  # an EvaluateError, which the command reports in one line as it did the missing file above.
  from jgen.evals import from_files

  points = tmp_path / "points.npy"
  np.save(points, np.zeros((5, 2)))
  with pytest.raises(from_files.EvaluateError, match="applies to images"):
    from_files.evaluate_file("ring8", str(points), str(missing))


def test_evaluate_images_adds_inception_fid_on_the_reference_images(monkeypatch, weights_path):
  """The wiring: inception_fid_row gets the evaluator's own real images and the samples."""
  from jgen.data import reference
  from jgen.evals import digit_classifier, from_files, images

  real = np.full((3, 8, 8, 3), 0.5, np.float32)
  fake = np.zeros((2, 8, 8, 3), np.float32)
  calls = []
  monkeypatch.setattr(reference, "reference_images", lambda data, num: real)
  monkeypatch.setattr(
    digit_classifier, "load_digit_classifier", lambda: type("C", (), {"accuracy": 1.0})
  )
  monkeypatch.setattr(images, "evaluate", lambda *args: {"modes": 1, "mode_counts": [2]})
  monkeypatch.setattr(
    inception, "inception_fid_row", lambda *args: calls.append(args) or {"inception_fid": 7.0}
  )
  row = from_files.evaluate_images(fake)
  assert "inception_fid" not in row and not calls
  row = from_files.evaluate_images(fake, weights_path)
  ((path, real_seen, fake_seen),) = calls
  assert path == weights_path and real_seen is real and fake_seen is fake
  assert row["inception_fid"] == 7.0 and "standard FID" in row["inception_feature_space"]
  assert list(row)[-1] == "mode_counts"


def test_converter_needs_torch_only_when_run(monkeypatch, tmp_path):
  # The command imports without torch, and defines no flags on import, so it sits beside
  # jgen.replay's --out.
  import importlib

  from jgen.evals import inception_convert

  for command in ("jgen.inception_weights", "jgen.replay"):
    importlib.import_module(command)

  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
  with pytest.raises(inception_convert.ConversionError, match="pip install torch"):
    inception_convert.convert(str(tmp_path / "a.pth"), str(tmp_path / "b.npz"))
  result = _run("jgen.inception_weights", f"--pth={tmp_path / 'absent.pth'}")
  assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr
  assert result.stderr.startswith("jgen.inception_weights: error: "), result.stderr


# --- against pytorch-fid (needs torch; skips in CI) ------------------------------------------


def _random_fid_inception(torch, pytorch_fid_inception, monkeypatch):
  """pytorch-fid's fid_inception_v3() without its download: the same construction, random
  weights, and batch-norm statistics measured on random images then perturbed, so every layer
  is normalized as in a trained network but no statistic is exactly (0, 1)."""
  pfi = pytorch_fid_inception
  torch.manual_seed(0)
  net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
  net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
  net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
  net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
  net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
  net.Mixed_7b = pfi.FIDInceptionE_1(1280)
  net.Mixed_7c = pfi.FIDInceptionE_2(2048)
  batch_norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.Conv2d):
        torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    for bn in batch_norms:
      bn.weight.uniform_(0.5, 1.5)
      bn.bias.normal_(0, 0.1)
      bn.reset_running_stats()
      bn.momentum = None  # cumulative: the statistics of the one batch below
    monkeypatch.setattr(pfi, "fid_inception_v3", lambda: net)  # the original downloads
    wrapper = pfi.InceptionV3([3])  # pytorch-fid's forward: resize, scale, blocks to pool3
    wrapper.train()
    wrapper(torch.rand(4, 3, 16, 16))
    wrapper.eval()
    for bn in batch_norms:
      bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.8, 1.25))
      bn.running_mean.add_(0.1 * torch.randn_like(bn.running_mean) * bn.running_var.sqrt())
  return net, wrapper


def test_matches_pytorch_fid(tmp_path, monkeypatch):
  torch = pytest.importorskip("torch")
  pfi = pytest.importorskip("pytorch_fid.inception")
  net, wrapper = _random_fid_inception(torch, pfi, monkeypatch)
  pth, npz = tmp_path / "random.pth", tmp_path / "random.npz"
  # The full state_dict, fc included, as published; in torch < 1.6's serialization, which a
  # file from 2019 may use (the converter reads both with weights_only=True).
  torch.save(net.state_dict(), pth, _use_new_zipfile_serialization=False)
  result = _run("jgen.inception_weights", f"--pth={pth}", f"--out={npz}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "warning" in result.stderr and "not comparable" in result.stderr  # not the real file
  model = inception.load_inception(str(npz))

  rng = np.random.default_rng(0)
  # jgen's 8x8 colour digits; grey, non-square; and larger than 299 (downsampling).
  for shape in [(4, 8, 8, 3), (3, 28, 20, 1), (2, 320, 310, 3)]:
    images = rng.uniform(size=shape).astype(np.float32)
    rgb_NxCxHxW = np.repeat(images, 3 // shape[-1], -1).transpose(0, 3, 1, 2)
    with torch.no_grad():
      expected = wrapper(torch.from_numpy(rgb_NxCxHxW.copy()))[0].flatten(1).numpy()
    got = inception.inception_features(model, images)
    max_diff = np.abs(got - expected).max()
    scale = np.abs(expected).max()
    print(f"{shape}: max |jgen - pytorch-fid| = {max_diff:.3g}, relative {max_diff / scale:.3g}")
    assert max_diff / scale < 1e-4, (shape, max_diff, scale)
    # Not trivially equal: the features differ between images by far more than that.
    assert np.abs(expected - expected.mean(0)).max() > 1000 * max_diff


def test_resize_matches_torch():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  for shape in [(2, 8, 8, 3), (1, 28, 20, 1), (1, 299, 299, 3), (1, 320, 310, 3)]:
    images = rng.uniform(size=shape).astype(np.float32)
    rgb = torch.from_numpy(np.repeat(images, 3 // shape[-1], -1).transpose(0, 3, 1, 2).copy())
    resized = torch.nn.functional.interpolate(rgb, (299, 299), mode="bilinear", align_corners=False)
    expected = (2 * resized - 1).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(inception.preprocess(images), expected, rtol=0, atol=2e-6)


def _tiny_image_config(**overrides):
  from configs import stacked_digits_gan

  config = stacked_digits_gan.get_config("runlocal")
  config.update_from_flattened_dict(
    {
      "data.num_train": 64,
      "train.batch_size": 16,
      "train.num_steps": 2,
      "train.steps_per_dispatch": 2,
      "train.log_every": 2,
      "train.eval_every": 2,
      "train.checkpoint_every": 2,
      "eval.num_samples": 100,
      "eval.feature_metrics": False,
      **overrides,
    }
  )
  return config


def test_training_logs_inception_fid_and_refuses_a_bad_file_before_training(tmp_path, weights_path):
  from jgen.data import reference
  from jgen.run import loop
  from jgen.trainers import gan as gan_trainer

  missing = _tiny_image_config(**{"eval.inception_weights": str(tmp_path / "none.npz")})
  with pytest.raises(inception.InceptionWeightsError, match=r"jgen\.inception_weights"):
    gan_trainer.train_and_evaluate(missing, str(tmp_path / "missing"))
  assert not os.path.exists(tmp_path / "missing")  # refused before anything was written

  config = _tiny_image_config(
    **{"eval.inception_weights": weights_path, "eval.inception_samples": 4}
  )
  row = gan_trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert row["step"] == 2 and row["inception_fid"] > 0
  # The same FID from first principles: G after the same 2 steps, its first 4 evaluation
  # samples against the first 4 reference images. The samples come from the same config
  # without the weights (training and sampling do not read them), so that only the FID
  # below is computed again.
  gan, root, data = gan_trainer.build(_tiny_image_config())
  state, _ = loop.run_chunk(gan, gan_trainer.init_state(gan, root), root, data, 2)
  samples, _ = gan_trainer.evaluate(gan, state, root)
  model = inception.load_inception(weights_path)
  real = reference.reference_images(gan.data.source, 4)
  expected = inception.inception_fid(model, real, samples[:4], batch_size=4)
  assert row["inception_fid"] == pytest.approx(expected, rel=1e-6)


def test_inception_weights_on_2d_data_is_an_error(make_tiny_config):
  from jgen.trainers import gan as gan_trainer

  config = make_tiny_config()
  config.unlock()
  config.eval.inception_weights = "x.npz"
  with pytest.raises(ValueError, match="image data, not 2D"):
    gan_trainer.build(config)
