"""Objectives: what a trainer minimizes.

  adversarial     GAN losses (non-saturating, hinge, Wasserstein) and gradient penalties
  reconstruction  MSE, L1, Gaussian NLL and perceptual losses of a reconstruction
  inverse         observation operators (identity, mask, downsampling), the degradation
                  y = A x + n and the data loss of an inverse problem

Imports jgen.core and, for perceptual features, jgen.evals' digit classifier; knows nothing
of data order or logging.
"""
