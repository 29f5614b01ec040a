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

import sys

from absl import flags

from jgen.core import cli
from jgen.evals import inception_convert


def define_flags() -> None:
  flags.DEFINE_string(
    "pth", None, "pytorch-fid's pt_inception-2015-12-05-6726825d.pth.", required=True
  )
  flags.DEFINE_string("out", "inception_fid.npz", "Where to write jgen's weights (.npz).")


def main() -> None:
  pth, out = flags.FLAGS.pth, flags.FLAGS.out
  digest = inception_convert.convert(pth, out)
  if not inception_convert.is_standard(digest):
    print(
      f"jgen.inception_weights: warning: {pth} has sha256 {digest}, not "
      f"{inception_convert.STANDARD_SHA256_PREFIX}...: not pytorch-fid's published file, so "
      "FIDs computed with it are not comparable with published ones",
      file=sys.stderr,
    )
  print(f"wrote {out} from {pth} (sha256 {digest})")


if __name__ == "__main__":
  cli.run(main, define_flags)
