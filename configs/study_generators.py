r"""One table, same data, same budget: reconstruct-then-interpolate (a DGN, sampled through each
prior over its codes) against the per-sample GAN, the set-D GAN and flow matching, on the 1,500
training digits, scored against the 297 held-out digits (jgen/studies/generator_table.py).

  python -m jgen.study --config=configs/study_generators.py --workdir=runs/generators
  python -m jgen.study --config=configs/study_generators.py:stacked --workdir=runs/generators_sd
  python -m jgen.study --config=configs/study_generators.py:runlocal --workdir=runs/gen_tiny

Every family trains on the same images (data.name=digits: digits 0..1499; 1500..1796 held out)
for the same number of image visits: `study.epochs` passes over the 1,500 digits at batch 64
(1,000 epochs: 23,438 steps; a GAN step is one D and one G update on 64 real images). Every
row is scored by one function on `study.num_samples` samples drawn through the family's
`sample` call: classifier-feature Frechet distance, precision/recall and density/coverage to the
held-out digits, modes (of 10 classes) and reverse KL, and the memorization rate against the
training digits. Each family's own settings are its config's (configs/stacked_digits_gan.py,
stacked_digits_setd.py, flow_digits.py, dgn.py); the DGN's G is the MLP G of width
`study.dgn_width` and z `study.dgn_z_dim` (the capacity study's N = 1,500 block measures which G
restores all 1,500; the table reports the fraction this one restored).

Stacked digits (`:stacked`, 1,000 modes): every family trains on its seed's 128,000 triples
for the stacked-digit configs' budget, 10,000 steps at batch 64 (5 passes), and every row is
scored on the protocol's 26,000 samples against fresh triples (modes of 1,000, reverse KL, the
classifier-feature metrics), the memorization rate on the first 2,000 against the cell's
128,000 training triples. The DGN is the same G as on single digits; at 5 visits per image it
cannot restore its codes (docs/reconstruct.md): the rows measure what reconstruct-first buys
at equal cost.

Switches: stacked (the stacked-digit table), runlocal (a smoke grid: 64 images, a few hundred
steps; its numbers test the code).
"""

import ml_collections

from configs import dgn, flow_digits, stacked_digits_gan, stacked_digits_setd
from jgen.core import config as config_lib

FAMILIES = {
  "dgn": lambda: dgn.get_config("priors=gaussian;gmm;knn;slerp;flow"),
  "per_sample_gan": stacked_digits_gan.get_config,
  "set_gan": stacked_digits_setd.get_config,
  "flow_matching": flow_digits.get_config,
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, stacked=False, runlocal=False)
  c = ml_collections.ConfigDict()
  c.study_kind = "generator_table"  # the study, by name (jgen/studies/__init__.py)
  c.bases = ml_collections.ConfigDict({name: make() for name, make in FAMILIES.items()})
  c.study = ml_collections.ConfigDict()
  c.study.data = "stacked_digits" if arg.stacked else "digits"  # digits | stacked_digits
  c.study.families = ",".join(FAMILIES)
  c.study.priors = "gaussian,gmm,knn,slerp,flow"  # the DGN's rows, one per code prior
  c.study.seeds = "1,2,3"
  c.study.num_train = 1500
  c.study.epochs = 1000
  c.study.batch_size = 64
  c.study.num_samples = 2000  # samples each row is scored on
  c.study.memorization_samples = 2000  # of those, the first ones checked for copies
  c.study.dgn_width = 512
  c.study.dgn_z_dim = 32
  c.study.code_flow_steps = 5000
  # The table's scoring settings (k-NN sizes, KID subsets, birthday test): the image configs'.
  c.eval = ml_collections.ConfigDict(stacked_digits_gan.get_config().eval.to_dict())
  c.eval.feature_metrics = True
  if arg.stacked:
    c.study.num_train = 128_000  # the stacked-digit configs' triples (VEEGAN / PacGAN)
    c.study.epochs = 5  # 10,000 steps at batch 64: the stacked-digit configs' budget
    c.study.num_samples = 26_000  # the protocol's, for modes of 1,000
  if arg.runlocal:
    c.study.seeds = "1,2"
    c.study.num_train = 64
    c.study.epochs = 40
    c.study.num_samples = 200
    c.study.dgn_width = 32
    c.study.dgn_z_dim = 8
    c.study.code_flow_steps = 100
    for name in ("per_sample_gan", "set_gan"):
      c.bases[name].model.generator.width = 8
      c.bases[name].model.discriminator.width = 8
      c.bases[name].model.discriminator.feature_dim = 16
    c.bases.flow_matching.model.width = 8
    c.bases.flow_matching.sampling.num_steps = 2
    c.bases.dgn.model.architecture = "mlp"
    c.bases.dgn.code_flow.model.width = 16
    c.bases.dgn.code_flow.sampling.num_steps = 4
  c.lock()
  return c
