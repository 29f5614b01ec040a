"""Data sources and the order they are read in.

  mixtures, stacked, digits, tfds_source   the 2D mixtures, stacked digits, scikit-learn's
                                           digits and TFDS datasets (random access)
  samplers, feistel                        pure index streams (key, step) -> indices
  reference                                the real images generated ones are compared with

jgen.datasets wraps these sources in the one interface trainers use. Imports only jgen.core.
"""
