"""Collapse detectors, read at every evaluation (`config.collapse`).

Each detector compares the newest evaluation row with a *reference*: the best
reading since the run started or since the last case, so that a slow slide
(8 -> 7 -> 6 modes) fires as surely as a sudden one, and each collapse fires
once. Detectors arm at the first evaluation that captures `arm_fraction` of the
modes (before that, G has not learned anything to lose). Thresholds are config
values; a detector set to 0 is off.

  mode_drop       captured modes fell by >= mode_drop below the reference's best
  kl_rise         reverse KL (rows' `reverse_kl`, the KL of the generated mode histogram
                  to the data's, for 2D mixtures and images alike) rose by >= kl_rise
  diversity_drop  diversity (mean pairwise distance of a fixed-z batch) fell below
                  diversity_drop x the reference's highest
  d_gap           d_real_logit - d_fake_logit > d_gap (D wins outright)
  non_finite      a loss went NaN or inf: the run loop stops and the recorder (told by its
                  on_non_finite hook) records the steps from the last checkpoint to the bad one
"""

import math

import ml_collections


def arms(config: ml_collections.ConfigDict, row: dict) -> bool:
  """Whether `row` shows a learned model, after which losing modes means collapse.

  Before G has reached the data at all (say 0-2 modes, ~0% high quality, as in the
  first thousands of steps), readings swing wildly and "collapse" has no meaning.
  """
  counts = row.get("mode_counts") or []
  return bool(counts) and row.get("modes", 0) >= config.arm_fraction * len(counts)


def empty_reference() -> dict:
  return {"modes": None, "reverse_kl": None, "diversity": None}


def update_reference(reference: dict, row: dict) -> dict:
  """The best of `reference` and `row`: most modes, lowest KL, highest diversity."""
  best = dict(reference)
  for key, better in (("modes", max), ("reverse_kl", min), ("diversity", max)):
    value = row.get(key)
    if value is None or not math.isfinite(value):
      continue
    best[key] = value if best[key] is None else better(best[key], value)
  return best


def check(config: ml_collections.ConfigDict, reference: dict, row: dict) -> list[dict]:
  """The detectors that fire on `row`, each as {detector, reading, reference, threshold}."""
  fired = []

  def fire(detector, reading, ref, threshold):
    fired.append(
      {"detector": detector, "reading": reading, "reference": ref, "threshold": threshold}
    )

  modes, ref_modes = row.get("modes"), reference["modes"]
  if (
    config.mode_drop > 0
    and None not in (modes, ref_modes)
    and ref_modes - modes >= config.mode_drop
  ):
    fire("mode_drop", modes, ref_modes, config.mode_drop)
  kl, ref_kl = row.get("reverse_kl"), reference["reverse_kl"]
  if config.kl_rise > 0 and None not in (kl, ref_kl) and kl - ref_kl >= config.kl_rise:
    fire("kl_rise", kl, ref_kl, config.kl_rise)
  diversity, ref_diversity = row.get("diversity"), reference["diversity"]
  if (
    config.diversity_drop > 0
    and None not in (diversity, ref_diversity)
    and diversity < config.diversity_drop * ref_diversity
  ):
    fire("diversity_drop", diversity, ref_diversity, config.diversity_drop)
  if config.d_gap > 0 and "d_real_logit" in row:
    gap = row["d_real_logit"] - row["d_fake_logit"]
    if gap > config.d_gap:
      fire("d_gap", gap, None, config.d_gap)
  return fired


def default_config() -> ml_collections.ConfigDict:
  """`config.collapse` for the GAN configs."""
  c = ml_collections.ConfigDict()
  c.enabled = True  # detectors run and cases are written
  c.trace = True  # per-step device digests (jgen/run/trace.py): what replay verifies
  c.arm_fraction = 0.5  # detectors arm once an evaluation captures this fraction of modes
  c.mode_drop = 2
  c.kl_rise = 0.5
  c.diversity_drop = 0.5
  c.d_gap = 20.0
  c.after_steps = 1000  # recorded after the trigger (rounded up to a logged step)
  c.on_trigger = "continue"  # or "stop"
  c.max_cases = 10
  return c


class Detector:
  """The detectors' running state: armed or not, the reference, cases opened so far.

  A firing (while under `max_cases`) resets the reference to the firing row, so the
  next case needs a new drop. `snapshot()`/`from_snapshot()` let a case carry the
  state at its start, so replay and counterfactuals judge their rows exactly as the
  run did.
  """

  def __init__(self, config: ml_collections.ConfigDict, snapshot: dict | None = None):
    self.config = config
    snapshot = snapshot or {}
    self.armed = snapshot.get("armed", False)
    self.reference = snapshot.get("reference", empty_reference())
    self.count = snapshot.get("count", 0)

  def snapshot(self) -> dict:
    return {"armed": self.armed, "reference": dict(self.reference), "count": self.count}

  def observe(self, row: dict) -> list[dict]:
    """Updates the state with an evaluation row; returns the detectors that fire."""
    self.armed = self.armed or arms(self.config, row)
    if not self.armed:
      return []
    fired = check(self.config, self.reference, row)
    if fired and self.count < self.config.max_cases:
      self.count += 1
      self.reference = update_reference(empty_reference(), row)
      return fired
    self.reference = update_reference(self.reference, row)
    return []
