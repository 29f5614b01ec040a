"""Every metric of generated samples, as functions of arrays.

  modes              PacGAN's 2D mode counts, high-quality fraction and reverse KL
  images             stacked-digit modes, KL and classifier-feature metrics
  features           Frechet distance, KID, precision/recall, density/coverage
  birthday           the birthday-paradox support estimate
  diversity          mean pairwise distance of a batch
  digit_classifier   the digit classifiers that label modes (trained once, cached)
  inception          the standard Inception FID (weights you provide)
  latents            what a trained DGN's codes generate (interpolations, fitted densities)
  from_files         `python -m jgen.evaluate`: samples read from .npy files

The named evaluators a config lists (config.evals) are jgen/datasets/evaluators.py, above
these functions, since they read a dataset's reference data.

Imports jgen.core and jgen.data (its sources), never viz, a trainer, a dataset or a command:
pictures of these metrics (jgen.evaluate's --plot too) are jgen/viz/plots.py's.
"""
