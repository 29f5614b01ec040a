"""The one run loop and what it keeps on disk.

  loop         train(trainer, config, workdir, root, data, observers): resume (verified) or
               refuse, dispatch, metric windows, non-finite stop, digests, evaluation,
               checkpoints, the observers' hooks (collapse cases), progress, the final row;
               run_chunk(trainer, ...) for replay and benchmarks
  trace        the state's digests (every row's state_digest, each part's sha256) and the
               per-step trace of indices and parameters (WORKDIR/trace/)
  schedule     when to log, evaluate and save; steps/s and ETA
  workdir      config.json (and the check that refuses a changed config), metrics.jsonl
               (rewritten atomically), TensorBoard
  checkpoints  orbax checkpoints, each with the digests of its parts; verified restore with
               fallback to the newest intact one
  fingerprint  what determines the trajectory, stored with the checkpoints
  lock         one writer per workdir
  signals      SIGTERM/SIGINT: finish the chunk, checkpoint, exit 75
  variants     same-shaped hyper-parameter variants as members of one population

Imported by trainers, replays and studies; imports core, data (samplers, for variants) and
viz (metric curves), never collapse or a trainer: a trainer hands the loop its case recorder.
"""
