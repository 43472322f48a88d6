"""Policy rollout: B images x G candidates as one batched sample() call vs G sequential calls.

    .venv/bin/python -m benchmarks.bench_rollout [--presets tiny paper] [--reps 3] [--threads 2]

Prints a markdown table (median wall time per rollout, speed-up) and parameter counts. Random
weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from irpo_common.device import resolve_device
from trainer.model import build_policy, model_preset


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "paper"])
    ap.add_argument("--batch", type=int, default=4, help="B images")
    ap.add_argument("--group", type=int, default=4, help="G candidates per image")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, {args.threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}; RANDOM weights (timing only)")
    print(f"\n| preset | parameters (backbone + heads) | batched B={args.batch} x G={args.group} | {args.group} sequential calls of B={args.batch} | speed-up |")
    print("|---|---|---|---|---|")
    for name in args.presets:
        torch.manual_seed(0)
        policy = build_policy(model_preset(name)).to(device).eval()
        x = torch.rand(args.batch, 3, args.size, args.size, device=device)
        gen = torch.Generator().manual_seed(0)
        policy.sample(x[:1, :, :64, :64], 1, generator=gen)  # warm-up (allocator, kernels)
        batched, sequential = [], []
        for _ in range(args.reps):
            batched.append(_timed(lambda: policy.sample(x, args.group, generator=gen), device))
            sequential.append(_timed(lambda: [policy.sample(x, 1, generator=gen) for _ in range(args.group)], device))
        b, s = statistics.median(batched), statistics.median(sequential)
        nb = sum(p.numel() for p in policy.backbone_parameters())
        nh = sum(p.numel() for p in policy.head_parameters())
        print(f"| {name} | {nb / 1e6:.3f} M + {nh / 1e6:.3f} M | {b:.2f} s | {s:.2f} s | {s / b:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
