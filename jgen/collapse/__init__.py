"""Collapse cases, from detection to replay.

  detectors   read each evaluation row and fire on a mode drop, a KL rise, ...
  trace       per-step device digests of the data indices and parameters; part digests
  recorder    writes a case (checkpoint, trace, rows, pictures) when a detector fires, and
              reads cases back (`python -m jgen.cases`)
  replay      re-runs a case bit for bit, or branches from it with another config
              (`python -m jgen.replay`)

detectors, trace and recorder sit below the trainers (the run loop uses them); replay sits
above them (it rebuilds the case's trainer by name) and nothing but commands and studies
import it.
"""
