"""A plain PyTorch training loop of jgen's default 2D GAN, for side-by-side timing.

Not part of jgen (torch is not a dependency): `python -m jgen.benchmark --torch`
runs it. Same model as configs/gan.py (G 2 -> 4x400 ReLU -> 2, per-sample D
2 -> 3x200 ReLU -> 1, Adam lr 1e-4 beta1 0.8, batch 100, non-saturating loss),
the same fake reuse between the D and G updates, indices drawn with replacement
from a 100,000-point ring. Prints one JSON object.
"""

import argparse
import itertools
import json
import os
import time

import torch
from torch import nn


def mlp(sizes):
  layers = []
  for fan_in, fan_out in itertools.pairwise(sizes):
    layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
  return nn.Sequential(*layers[:-1])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=5000)
  parser.add_argument("--batch", type=int, default=100)
  args = parser.parse_args()
  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count())
  angles = torch.randint(0, 8, (100_000,)) * (2 * torch.pi / 8)
  data = torch.stack([angles.cos(), angles.sin()], 1) + 0.01 * torch.randn(100_000, 2)
  generator, discriminator = mlp([2, 400, 400, 400, 400, 2]), mlp([2, 200, 200, 200, 1])
  g_opt = torch.optim.Adam(generator.parameters(), lr=1e-4, betas=(0.8, 0.999))
  d_opt = torch.optim.Adam(discriminator.parameters(), lr=1e-4, betas=(0.8, 0.999))
  softplus = nn.functional.softplus

  def step():
    real = data[torch.randint(0, data.shape[0], (args.batch,))]
    fake = generator(torch.randn(args.batch, 2))
    logits = discriminator(torch.cat([real, fake.detach()]))
    d_loss = softplus(-logits[: args.batch]).mean() + softplus(logits[args.batch :]).mean()
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    g_loss = softplus(-discriminator(fake)).mean()
    g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    g_opt.step()

  for _ in range(200):  # warm-up
    step()
  start = time.perf_counter()
  for _ in range(args.steps):
    step()
  seconds = time.perf_counter() - start
  print(
    json.dumps(
      {
        "measure": "torch reference (per-sample D, plain loop)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "steps_per_sec": round(args.steps / seconds, 1),
      }
    )
  )


if __name__ == "__main__":
  main()
