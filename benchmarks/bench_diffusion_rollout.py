"""Diffusion policy rollout: B images x G candidates in one batched sampler call vs G sequential
calls of B images (G = 1 each) vs B * G sequential calls of one image and one candidate.

    .venv/bin/python -m benchmarks.bench_diffusion_rollout [--presets tiny larger] [--reps 5] [--threads 1 2]

Prints a markdown table (median wall time per rollout over the repeats, the modes interleaved so a
changing load hits all alike; speed-ups of the batched call) and the 1-min load average before and
after. RANDOM weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from trainer.policies import build_policy
from trainer.policies.diffusion import DIFFUSION_TINY, DiffusionConfig

PRESETS = {
    "tiny": DIFFUSION_TINY,
    # a step towards a real restorer: wider, two ResNet layers per block, attention at the bottom
    "larger": dict(block_out_channels=[32, 64, 128], layers_per_block=2, attention=True, norm_num_groups=8, sampling_steps=10),
}


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--batch", type=int, default=4, help="B images")
    ap.add_argument("--group", type=int, default=4, help="G candidates per image")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    b, g = args.batch, args.group
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{args.size}x{args.size}, median of {args.reps}; RANDOM weights (timing only); load average {os.getloadavg()[0]:.2f}")
    print(f"\n| preset | parameters | DDIM steps | threads | batched B={b} x G={g} | {g} calls of B={b} | {b * g} calls of 1 | vs {g} calls | vs {b * g} calls |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.presets:
        torch.manual_seed(0)
        policy = build_policy(DiffusionConfig(**PRESETS[name])).eval()
        params = sum(p.numel() for p in policy.parameters())
        x = torch.rand(b, 3, args.size, args.size)
        gen = torch.Generator().manual_seed(0)
        modes = {
            "batched": lambda: policy.sample(x, g, gen),
            "per_candidate": lambda: [policy.sample(x, 1, gen) for _ in range(g)],
            "per_row": lambda: [policy.sample(x[i : i + 1], 1, gen) for i in range(b) for _ in range(g)],
        }
        for threads in args.threads:
            torch.set_num_threads(threads)
            for fn in modes.values():  # warm-up: allocator and oneDNN kernels for each batch shape
                fn()
            times: dict[str, list[float]] = {m: [] for m in modes}
            for _ in range(args.reps):
                for m, fn in modes.items():
                    times[m].append(_seconds(fn))
            med = {m: statistics.median(t) for m, t in times.items()}
            print(f"| {name} | {params / 1e6:.2f} M | {policy.cfg.sampling_steps} | {threads} | {med['batched']:.3f} s | {med['per_candidate']:.3f} s | "
                  f"{med['per_row']:.3f} s | {med['per_candidate'] / med['batched']:.2f}x | {med['per_row'] / med['batched']:.2f}x |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
