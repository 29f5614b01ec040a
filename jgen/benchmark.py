r"""Throughput of the GAN step, and where the time goes.

  python -m jgen.benchmark --config=configs/gan.py
  python -m jgen.benchmark --config=configs/gan_setd.py --torch   # + a PyTorch loop
  python -m jgen.benchmark --config=configs/stacked_digits_setd.py   # images: gather vs constant

Prints one JSON object per measurement (jgen/studies/speed.py says what each measures).
"""

import json

from absl import flags

from jgen import datasets
from jgen.core import cli
from jgen.studies import speed


def define_flags() -> None:
  cli.define_config("Experiment config.", default="configs/gan.py")
  flags.DEFINE_integer("steps", 5000, "Steps per timed repeat.")
  flags.DEFINE_integer("repeats", 3, "Timed repeats (the best is reported).")
  flags.DEFINE_bool("torch", False, "Also time benchmarks/torch_gan.py.")
  flags.DEFINE_list(
    "population_sizes", [], "Member-steps/s for these population sizes, e.g. 1,8,64,256."
  )
  flags.DEFINE_string(
    "replay_case", None, "Time jgen.replay on this case against training the same steps."
  )


def main() -> None:
  args = flags.FLAGS
  config, steps, repeats = args.config, args.steps, args.repeats
  if datasets.is_image_data(config.data.name):
    rows = speed.image_benchmark(config, steps, repeats)
  elif args.population_sizes:
    sizes = [int(size) for size in args.population_sizes]
    rows = speed.population_scaling(config, sizes, steps, repeats)
  elif args.replay_case:
    rows = [speed.replay_speed(args.replay_case, repeats)]
  else:
    rows = speed.benchmark(config, steps, repeats)
    if args.torch:
      rows.append(speed.torch_reference(config, steps))
      if "steps_per_sec" in rows[-1]:
        rows[-1]["jax_speedup"] = round(rows[0]["steps_per_sec"] / rows[-1]["steps_per_sec"], 2)
  for row in rows:
    print(json.dumps(row))


if __name__ == "__main__":
  cli.run(main, define_flags)
