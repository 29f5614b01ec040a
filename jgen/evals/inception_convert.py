"""pytorch-fid's FID Inception weights (.pth) to jgen's weights file (.npz).

The .pth is pytorch-fid's port of TensorFlow's 2015-12-05 Inception graph, the network of the
standard FID. The .npz holds the state_dict's arrays under their PyTorch names and layouts
(jgen/evals/inception.py describes it); the classifier is dropped. Only the conversion needs
PyTorch, imported when it runs. `python -m jgen.inception_weights` is the command.
"""

import hashlib
import os

from jgen.evals import inception

STANDARD_SHA256_PREFIX = "6726825d"
# torchvision's ImageNet Inception-v3 has the same parameter names but 1,000 classes and an
# auxiliary head; the TF 2015 graph has 1,008 classes and no auxiliary head.
FID_NUM_CLASSES = 1008


class ConversionError(ValueError):
  """A problem with the input: its message says what and where."""


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
  arrays = read_state_dict(pth)
  try:
    inception.write_weights(out, arrays, source=pth)
  except inception.InceptionWeightsError as e:
    raise ConversionError(str(e)) from None
  except OSError as e:
    raise ConversionError(f"cannot write {out} ({e})") from None
  inception.load_inception(out)  # reads back what was written
  return sha256(pth)


def is_standard(digest: str) -> bool:
  """Whether a .pth's sha256 is that of pytorch-fid's published file (torch hub names files by
  their hash): FIDs from another file are not comparable with published ones."""
  return digest.startswith(STANDARD_SHA256_PREFIX)
