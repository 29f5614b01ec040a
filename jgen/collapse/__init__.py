"""Collapse cases: detecting a collapse while a run trains, and recording it.

  detectors   read each evaluation row and fire on a mode drop, a KL rise, ...
  recorder    writes a case (checkpoint, trace, rows, pictures) when a detector fires, and
              reads cases back (`python -m jgen.cases`)

The recorder is one of the run loop's observers: a trainer's train_and_evaluate passes it to
jgen/run/loop.py, which calls its hooks; it reads the run's checkpoints and trace
(jgen/run/trace.py) through the objects the loop hands it, so this package imports only
jgen.core. Replaying a case is jgen/replays/, above the trainers.
"""
