"""Peak memory of one learner update of the paper preset (configs/paper-5task.yaml: the released AdaIR's
architecture, G = 4, 128 px crops) with 8 images per step, micro-batched, on the CPU.

    .venv/bin/python -m benchmarks.bench_learner_memory [--images 8] [--micro-batch-images 1]
        [--precision bf16] [--threads 2] [--config configs/paper-5task.yaml]

Samples the step's rollout image by image (no gradient), then runs one Learner.update and prints one JSON
line: peak_rss_gb (the process's peak resident set, sampling included), images_per_step, the update's
seconds. Random weights (the preset's AdaIR checkpoint is not needed for memory or speed), random rewards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import torch

from trainer.actors.learner import Learner
from trainer.actors.messages import Rollout
from trainer.config import load_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/paper-5task.yaml")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--micro-batch-images", type=int, default=1)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="default: the config's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--crop", type=int, default=None, help="default: the config's data.crop_size (a smaller one for a quick check)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [
        "device=cpu", "model.checkpoint=null",  # random weights
        "rollout.num_workers=1", f"rollout.images_per_worker={args.images}",
        f"learner.micro_batch_images={args.micro_batch_images}",
        *([f"learner.precision={args.precision}"] if args.precision else []),
        *([f"data.crop_size={args.crop}"] if args.crop else []),
    ])
    learner = Learner(cfg, total_steps=100)
    g, side = cfg.grpo.group_size, cfg.data.crop_size
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(args.images, 3, side, side, generator=gen)
    degraded = (target + 0.1 * torch.randn(target.shape, generator=gen)).clamp(0, 1)
    samples = [learner.policy.sample(degraded[i : i + 1], g, generator=gen) for i in range(args.images)]
    trajectory = type(samples[0].trajectory).cat([s.trajectory for s in samples])
    rollout = Rollout(step=0, version=0, ids=[f"img{i}" for i in range(args.images)], tasks=["denoise"] * args.images,
                      degraded=degraded, target=target, trajectory=trajectory, rewards=torch.rand(args.images, g, generator=gen), terms={})
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    stats, _ = learner.update(rollout)
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "peak_rss_gb_before_update": round(rss_before, 2),
        "images_per_step": args.images,
        "group_size": g,
        "crop": side,
        "micro_batch_images": args.micro_batch_images,
        "precision": cfg.learner.precision,
        "parameters_m": round(sum(p.numel() for p in learner.policy.parameters()) / 1e6, 2),
        "update_s": round(seconds, 1),
        "loss_finite": bool(torch.isfinite(torch.tensor(stats["loss/total"]))),
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "weights": "RANDOM (the preset's architecture; memory and speed do not depend on the values)",
    }), flush=True)


if __name__ == "__main__":
    main()
