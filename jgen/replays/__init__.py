"""Re-running a recorded collapse case (jgen/collapse/recorder.py writes them).

  replay          re-runs a case bit for bit, checking every recorded digest
                  (`python -m jgen.replay --case=...`)
  counterfactual  branches from a case's start with another config and compares the branches
                  (`python -m jgen.replay --case=... --override=config.a.b=v`)

Both rebuild the case's trainer by its name, so this package sits above the trainers; only
studies and commands import it.
"""
