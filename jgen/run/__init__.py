"""The one run loop and what it keeps on disk.

  loop         train(trainer, config, workdir, root, data): resume or refuse, dispatch,
               metric windows, non-finite stop, digests, evaluation, checkpoints, cases,
               progress, the final row; run_chunk(trainer, ...) for replay and benchmarks
  schedule     when to log, evaluate and save; steps/s and ETA
  workdir      config.json (and the check that refuses a changed config), metrics.jsonl,
               TensorBoard
  checkpoints  orbax checkpoints of the train state
  jsonl        the one reader and writer of JSON-lines files
  variants     same-shaped hyper-parameter variants as members of one population

Imported by trainers, collapse replay and studies; imports core, data (samplers, for
variants), collapse.{recorder,trace} and viz, never a trainer.
"""
