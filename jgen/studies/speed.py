"""Throughput of the GAN step and where the time goes (`python -m jgen.benchmark`).

One JSON row per measurement: the whole training step, the sampler and gather alone (its
share of the step), XLA's FLOP count per step and the achieved GFLOP/s, the trace's
overhead, population scaling, image steps against a constant batch, and replay against
training the same steps; with `torch_reference`, the same model in a plain PyTorch loop
(benchmarks/torch_gan.py) on the same machine.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jgen.collapse import recorder
from jgen.replays import replay
from jgen.run import loop
from jgen.trainers import gan as gan_trainer
from jgen.trainers import gan_step


def _best_time(run, repeats: int) -> float:
  jax.block_until_ready(run())  # compile and warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(run())
    times.append(time.perf_counter() - start)
  return min(times)


def _sampler_only(gan, root, data, steps: int):
  """The data order's share: indices and gather for `steps` steps, nothing else."""

  @jax.jit
  def run(data):
    def body(total, step):
      return total + gan_step.draw_real(gan, root, data, step)[1].sum(), None

    return jax.lax.scan(body, 0.0, np.arange(steps, dtype=np.int32))[0]

  return lambda: run(data)


def _train_seconds(config, steps: int, repeats: int):
  gan, root, data = gan_trainer.build(config)
  state = gan_trainer.init_state(gan, root)
  flops_per_step = 0.0
  if gan.population == 1:
    # XLA counts a scan's body once, so FLOPs come from a single un-scanned step.
    one_step = jax.jit(lambda s, r, d: gan_step.train_step(gan, s, r, d))
    cost = one_step.lower(state, root, data).compile().cost_analysis()
    flops_per_step = (cost[0] if isinstance(cost, list) else cost).get("flops", 0.0)
  holder = {"state": state}

  def train():
    holder["state"], metrics = loop.run_chunk(gan, holder["state"], root, data, steps)
    return metrics

  return _best_time(train, repeats), flops_per_step, (gan, root, data)


def benchmark(config, steps: int, repeats: int) -> list[dict]:
  train_seconds, flops_per_step, (gan, root, data) = _train_seconds(config, steps, repeats)
  untraced = config.copy_and_resolve_references()
  untraced.collapse.trace = not config.collapse.trace
  other_seconds, _, _ = _train_seconds(untraced, steps, repeats)
  common = {
    "config": config.model.discriminator.name,
    "sampler": config.sampler.kind,
    "devices": f"{jax.device_count()}x {jax.devices()[0].device_kind}",
    "steps": steps,
  }
  sampler_seconds = _best_time(_sampler_only(gan, root, data, steps), repeats)
  return [
    {
      **common,
      "measure": "jax train step (D+G update, sampler included)",
      "steps_per_sec": round(steps / train_seconds, 1),
      "gflop_per_step": round(flops_per_step / 1e9, 4),
      "gflop_per_sec": round(flops_per_step * steps / train_seconds / 1e9, 1),
    },
    {
      **common,
      "measure": f"same step with collapse.trace={untraced.collapse.trace}",
      "steps_per_sec": round(steps / other_seconds, 1),
      "trace_overhead": round(
        (train_seconds / other_seconds if config.collapse.trace else other_seconds / train_seconds)
        - 1,
        4,
      ),
    },
    {
      **common,
      "measure": "sampler + gather alone",
      "steps_per_sec": round(steps / sampler_seconds, 1),
      "share_of_step": round(sampler_seconds / train_seconds, 4),
    },
  ]


def torch_reference(config, steps: int) -> dict:
  script = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "torch_gan.py"
  result = subprocess.run(
    [sys.executable, str(script), f"--steps={steps}", f"--batch={config.train.batch_size}"],
    capture_output=True,
    text=True,
    env={**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())},
  )
  if result.returncode:
    return {"measure": "torch reference", "error": result.stderr.strip().splitlines()[-1:]}
  return json.loads(result.stdout.strip().splitlines()[-1])


def replay_speed(case_dir: str, repeats: int) -> dict:
  """jgen.replay's verification against training the same steps, side by side.

  Replay pays a fixed start (config, data, orbax restore, compilation) like any
  training start; its steady speed is what the step-by-step checking costs.
  """
  case = recorder.load_case(case_dir)
  steps = case["end_step"] - case["start_step"]
  timings = {}
  start = time.perf_counter()
  replay.verify(case, timings=timings)
  replay_total = time.perf_counter() - start
  config = recorder.case_config(case)
  gan, root, data = gan_trainer.build(config)
  start_state = gan_trainer.init_state(gan, root)
  length = min(config.train.steps_per_dispatch, config.train.log_every)
  chunks = timings["steady_steps"] // length

  def train():
    state = jax.tree.map(jnp.copy, start_state)  # the chunk donates its input state
    for _ in range(chunks):
      state, metrics = loop.run_chunk(gan, state, root, data, length)
      jax.device_get(metrics)  # training fetches its window at every logged step too
    return state

  train_seconds = _best_time(train, repeats)
  replay_steady = timings["steady_steps"] / timings["steady_s"]
  train_steady = chunks * length / train_seconds
  return {
    "measure": "replay vs training the same steps",
    "case": case["id"],
    "steps": steps,
    "replay_wall_s": round(replay_total, 2),
    "replay_setup_s": round(timings["setup_s"], 2),
    "replay_first_chunk_with_compile_s": round(timings["first_chunk_s"], 2),
    "replay_steady_steps_per_sec": round(replay_steady, 1),
    "train_steady_steps_per_sec": round(train_steady, 1),
    "steady_replay_over_train": round(replay_steady / train_steady, 3),
  }


def population_scaling(config, sizes: list[int], steps: int, repeats: int) -> list[dict]:
  """Member-steps/s of one vmapped program per population size P.

  On CPU vmap alone gains little (XLA:CPU runs the batched matmuls on one thread); the
  members split over the cores (jgen/core/parallel.py) gain when those cores are free. On an
  accelerator one small GAN leaves the device idle and P members fill it.
  `speedup_over_sequential` compares with P=1's rate: the members one after another.
  """
  rows = []
  for size in sizes:
    sized = config.copy_and_resolve_references()
    sized.population.size = size
    sized.collapse.trace = False  # populations are not traced; compare like with like
    member_steps = max(10, steps // size)
    seconds, _, (gan, _, _) = _train_seconds(sized, member_steps, repeats)
    rows.append(
      {
        "measure": "population",
        "population": size,
        "steps": member_steps,
        "member_steps_per_sec": round(size * member_steps / seconds, 1),
        # the devices this population ran on (a single run keeps one; parallel.py)
        "devices": f"{gan.mesh.size}x {jax.devices()[0].device_kind}",
      }
    )
  for row in rows:
    row["speedup_over_sequential"] = round(
      row["member_steps_per_sec"] / rows[0]["member_steps_per_sec"], 2
    )
  return rows


class _ConstantBatch:
  """Image data whose every step sees the same batch (a device input, so XLA cannot fold it):
  the baseline that the index stream and on-device gather are compared with."""

  def __init__(self, dataset):
    self.name, self.sample_shape, self.num_modes = dataset.name, dataset.sample_shape, 0
    self.on_host = False

  def gather(self, data, indices):
    del indices
    return data["batch"]


def image_benchmark(config, steps: int, repeats: int) -> list[dict]:
  """Image configs: steps/s with the batch gathered by index on the device (trace off and on)
  against a constant batch. The three alternate within each repeat, so that machine load
  hits them alike; the best repeat of each is reported."""

  variants = {}
  for trace_on in (False, True):
    run_config = config.copy_and_resolve_references()
    run_config.collapse.trace = trace_on
    gan, root, data = gan_trainer.build(run_config)
    variants["traced" if trace_on else "gathered"] = (gan, data)
    if not trace_on:
      batch = gan_step.draw_real(gan, root, data, jnp.int32(0))[1]
      constant = dataclasses.replace(gan, data=_ConstantBatch(gan.data))
      variants["constant"] = (constant, {"batch": batch})
  states = {k: gan_trainer.init_state(g, root) for k, (g, _) in variants.items()}
  for name, (g, d) in variants.items():  # compile and warm up
    states[name] = jax.block_until_ready(loop.run_chunk(g, states[name], root, d, 2)[0])
  best = dict.fromkeys(variants, float("inf"))
  for _ in range(repeats):
    for name, (g, d) in variants.items():
      start = time.perf_counter()
      states[name] = jax.block_until_ready(loop.run_chunk(g, states[name], root, d, steps)[0])
      best[name] = min(best[name], time.perf_counter() - start)
  gathered, constant, traced = best["gathered"], best["constant"], best["traced"]
  return [
    {
      "measure": "image step",
      "data": config.data.name,
      "discriminator": config.model.discriminator.name,
      "backend": jax.default_backend(),
      "one_dispatch_per_step": bool(variants["gathered"][0].step_by_step),
      "gathered_steps_per_sec": round(steps / gathered, 1),
      "constant_batch_steps_per_sec": round(steps / constant, 1),
      "gather_overhead_pct": round(100 * (gathered / constant - 1), 2),
      "traced_steps_per_sec": round(steps / traced, 1),
      "trace_overhead_pct": round(100 * (traced / gathered - 1), 2),
    }
  ]
