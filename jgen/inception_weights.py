r"""Converts pytorch-fid's FID Inception weights (.pth) into jgen's weights file (.npz).

  pip install torch   # only this converter needs it
  python -m jgen.inception_weights --pth=pt_inception-2015-12-05-6726825d.pth \
    --out=inception_fid.npz

The .pth is pytorch-fid's port of TensorFlow's 2015-12-05 Inception graph, the network of the
standard FID, published with pytorch-fid's releases:

  https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth

jgen never downloads anything at run time: fetch the file yourself, convert it once, then pass
the .npz to `python -m jgen.evaluate --inception_weights=inception_fid.npz` (or to
`jgen.evals.inception.load_inception`). The .npz holds the state_dict's arrays under their
PyTorch names and layouts (jgen/evals/inception.py describes it); the classifier is dropped.
A file whose sha256 does not begin with the 6726825d of its name (torch hub names files by
their hash) converts with a warning: its FIDs are not comparable with published ones.
"""

import hashlib
import os
import sys

from absl import app, flags


def _define_flags() -> None:
  # Defined only when run as a program: jgen.replay also has an --out, and absl refuses a
  # second definition, so importing both must not define these.
  flags.DEFINE_string("pth", None, "pytorch-fid's pt_inception-2015-12-05-6726825d.pth.")
  flags.DEFINE_string("out", "inception_fid.npz", "Where to write jgen's weights (.npz).")
  flags.mark_flags_as_required(["pth"])


STANDARD_SHA256_PREFIX = "6726825d"
# torchvision's ImageNet Inception-v3 has the same parameter names but 1,000 classes and an
# auxiliary head; the TF 2015 graph has 1,008 classes and no auxiliary head.
FID_NUM_CLASSES = 1008


class ConversionError(Exception):
  """A problem with the input, reported as one line without a traceback."""


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def read_state_dict(path: str) -> dict:
  """The .pth's arrays as float32 numpy, or ConversionError."""
  try:
    import torch
  except ImportError:
    raise ConversionError(
      "converting the .pth needs PyTorch: `pip install torch` (or `pip install jgen[inception]`)"
    ) from None
  if not os.path.isfile(path):
    from jgen.evals import inception

    raise ConversionError(
      f"file not found: {path} (pytorch-fid publishes it: {inception.FID_WEIGHTS_URL})"
    )
  try:
    # weights_only: a .pth from elsewhere must not be able to run code here.
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many kinds for a file that is not a state_dict
    raise ConversionError(f"cannot read {path} as a PyTorch state_dict ({e})") from None
  if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
    raise ConversionError(f"{path} does not hold a state_dict of tensors")
  if any(k.startswith("AuxLogits.") for k in state) or (
    "fc.weight" in state and state["fc.weight"].shape[0] != FID_NUM_CLASSES
  ):
    raise ConversionError(
      f"{path} looks like torchvision's ImageNet Inception-v3, not the FID Inception "
      "(pt_inception-2015-12-05-6726825d.pth): its features give different FIDs"
    )
  return {k: v.detach().to(torch.float32).numpy() for k, v in state.items()}


def convert(pth: str, out: str) -> str:
  """Writes the .npz; returns the .pth's sha256."""
  from jgen.evals import inception

  arrays = read_state_dict(pth)
  try:
    inception.write_weights(out, arrays, source=pth)
  except inception.InceptionWeightsError as e:
    raise ConversionError(str(e)) from None
  except OSError as e:
    raise ConversionError(f"cannot write {out} ({e})") from None
  inception.load_inception(out)  # reads back what was written
  return sha256(pth)


def main(argv):
  if len(argv) > 1:
    print(f"jgen.inception_weights: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    return 2
  pth, out = flags.FLAGS.pth, flags.FLAGS.out
  try:
    digest = convert(pth, out)
  except ConversionError as e:
    print(f"jgen.inception_weights: error: {e}", file=sys.stderr)
    return 1
  if not digest.startswith(STANDARD_SHA256_PREFIX):
    print(
      f"jgen.inception_weights: warning: {pth} has sha256 {digest}, not "
      f"{STANDARD_SHA256_PREFIX}...: not pytorch-fid's published file, so FIDs computed with "
      "it are not comparable with published ones",
      file=sys.stderr,
    )
  print(f"wrote {out} from {pth} (sha256 {digest})")
  return 0


if __name__ == "__main__":
  _define_flags()
  app.run(main)
