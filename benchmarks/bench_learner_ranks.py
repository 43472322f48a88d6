"""Learner update throughput of a 2-rank learner group against 1 rank at equal global batch, on a local Ray.

    .venv/bin/python -m benchmarks.bench_learner_ranks [--config configs/cpu-demo.yaml] [--images 4] [--reps 5]

Both groups start on one Ray (1 CPU per rank, so 1 torch thread per rank) and update in turn on the same
rollouts (sampled once by the config's policy, random rewards), so a changing machine load hits both alike.
Prints one JSON line: median seconds per update and rows/s (rows = images x G) per arm, and their ratio.
Random weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import ray
import torch

from trainer.actors.learner import Learner
from trainer.actors.learner_group import LearnerGroup
from trainer.actors.messages import Rollout
from trainer.config import load_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/cpu-demo.yaml")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, ["device=cpu", "model.checkpoint=null", "rollout.num_workers=1", f"rollout.images_per_worker={args.images}",
                                    "learner.cpus_per_rank=1", "grpo.advantage=group"])
    sampler = Learner(cfg, total_steps=100)
    g, side = cfg.grpo.group_size, cfg.data.crop_size
    gen = torch.Generator().manual_seed(0)
    rollouts = []
    for step in range(args.reps + 1):
        target = torch.rand(args.images, 3, side, side, generator=gen)
        degraded = (target + 0.1 * torch.randn(target.shape, generator=gen)).clamp(0, 1)
        s = sampler.policy.sample(degraded, g, generator=gen)
        rollouts.append(Rollout(step=step, version=0, ids=[f"img{i}" for i in range(args.images)], tasks=["denoise"] * args.images, degraded=degraded,
                                target=target, trajectory=s.trajectory, rewards=torch.rand(args.images, g, generator=gen), terms={}))
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(num_cpus=3, include_dashboard=False, object_store_memory=300 * 1024 * 1024, _temp_dir=tempfile.mkdtemp(prefix="ray-bench-", dir="/tmp"))
    try:
        arms = {n: LearnerGroup(cfg.model_copy(update={"learner": cfg.learner.model_copy(update={"num_ranks": n})}), total_steps=100) for n in (1, 2)}
        times: dict[int, list[float]] = {1: [], 2: []}
        for step, rollout in enumerate(rollouts):
            ref = ray.put(rollout)
            for n, group in arms.items():
                t0 = time.perf_counter()
                group.update(ref)
                if step:  # the first update of each arm warms up (allocations, gloo)
                    times[n].append(time.perf_counter() - t0)
        rows = args.images * g
        med = {n: statistics.median(t) for n, t in times.items()}
        print(json.dumps({
            "images_per_step": args.images, "group_size": g, "crop": side, "rows_per_step": rows, "reps": args.reps,
            "parameters_m": round(sum(p.numel() for p in sampler.policy.parameters()) / 1e6, 2),
            "update_s_median": {f"{n}_rank": round(v, 3) for n, v in med.items()},
            "update_s_all": {f"{n}_rank": [round(x, 3) for x in t] for n, t in times.items()},
            "rows_per_s": {f"{n}_rank": round(rows / v, 2) for n, v in med.items()},
            "speedup_2_over_1": round(med[1] / med[2], 3),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "weights": "RANDOM (speed does not depend on them)",
        }), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
