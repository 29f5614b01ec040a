"""The foundation every other package stands on: nothing here knows about data, models,
trainers or metrics.

  rng         named PRNG streams: every draw is a function of (root key, stream, step)
  digest      state digests, equal if and only if two pytrees are bit-identical
  registry    choose by name, failing with the list of valid names
  config      `--config=file.py:switch=value` switches and `config.a.b=value` overrides
  optimizers  optax optimizers chosen by name
  parallel    data parallelism over a device mesh; GPU determinism flags
  cli         the one way a `python -m jgen.X` command defines flags, logs and reports errors

Who may import it: everything in jgen. What it may import: JAX, optax, ml_collections, absl and
the standard library, and nothing of jgen outside core, so that core never depends on what is
built on it. `cli` is the exception in the other direction: only command modules
(jgen/main.py and the other `python -m jgen.X` shells) import it, never the library.
"""
